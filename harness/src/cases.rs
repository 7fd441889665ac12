//! Table-driven filter tests in YAML, run by `weft filter test FILTER.wasm --config
//! CONFIG.yaml --cases CASES.yaml`: each case sends one request through the filter's hooks on
//! a [`Harness`] and compares what the filter did with what the case expects.
//!
//! ```yaml
//! seed: 7                        # randomness (optional)
//! cases:
//!   - name: the first request passes
//!     request: { path: /api, headers: { x-tenant: acme }, client: "10.0.0.7:5000" }
//!     expect: { action: continue, request_headers: { x-user: null } }
//!   - name: the second is limited
//!     request: { path: /api }
//!     expect:
//!       action: respond
//!       status: 429
//!       response_headers: { retry-after: "3600" }
//!       metrics: [{ name: weft_filter_ratelimit_decisions_total, labels: { decision: limited }, value: 1 }]
//!   - name: an hour later it passes again
//!     advance: 1h
//!     request: { path: /api }
//!     expect: { action: continue }
//!   - name: a filter that calls out gets the case's fake answer
//!     request: { path: /orders, headers: { authorization: Bearer t } }
//!     calls:                     # answers by upstream name, for the `call` action
//!       authz: { status: 403, headers: { www-authenticate: Bearer }, body: "no\n" }
//!       flags: { error: timeout }  # or unknown_upstream, unavailable, response_too_large, ...
//!     expect: { action: respond, status: 403, calls: ["GET authz /check/orders"] }
//! ```
//!
//! Cases run in order on one harness, so state (token buckets, caches) carries from one to the
//! next, and time moves only by each case's `advance`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::{Deserialize, Deserializer};

use weft_yaml::{ConfigError, parse_yaml};

use crate::harness::{
    CallError, CallResponse, Harness, ResponseHead, TestRequest, Verdict, response,
};

/// A cases file.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with the key `cases` (and optionally `seed`)"
)]
pub struct CaseFile {
    /// The seed of the filter's randomness; the harness default when absent.
    pub seed: Option<u64>,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One request through the filter and what should come of it.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a case: a mapping with `name`, `request` and `expect`"
)]
pub struct Case {
    /// What the report calls it.
    pub name: String,
    /// Virtual time to let pass before the request (`100ms`, `1s`, `1h`).
    #[serde(default, deserialize_with = "duration")]
    pub advance: Option<Duration>,
    /// The request; `GET /` with no headers when absent.
    #[serde(default)]
    pub request: CaseRequest,
    /// The upstream's response, if the case runs the response hook too.
    pub response: Option<CaseResponse>,
    /// Answers to the filter's outbound calls (the `call` action), by upstream name. A call to
    /// an upstream not listed fails with `unavailable`.
    #[serde(default)]
    pub calls: BTreeMap<String, CaseCallAnswer>,
    /// What the filter should have done.
    #[serde(default)]
    pub expect: Expect,
}

/// A synthetic request.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a request: `method`, `path`, `headers`, ..."
)]
pub struct CaseRequest {
    /// The method; `GET` by default.
    #[serde(default = "get")]
    pub method: String,
    /// Path and query; `/` by default.
    #[serde(default = "root")]
    pub path: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The client's address; `127.0.0.1:40000` by default.
    pub client: Option<String>,
    /// The route the request matched; `default` by default.
    pub route: Option<String>,
    /// The caller's SPIFFE ID, as an mTLS listener reports it; none (plaintext) by default.
    pub peer_identity: Option<String>,
    /// The route's upstream; `backend` by default.
    pub upstream: Option<String>,
    /// The request body; the body hook runs on it if the filter declares one.
    pub body: Option<String>,
}

impl Default for CaseRequest {
    fn default() -> Self {
        Self {
            method: get(),
            path: root(),
            headers: BTreeMap::new(),
            client: None,
            route: None,
            peer_identity: None,
            upstream: None,
            body: None,
        }
    }
}

fn get() -> String {
    "GET".to_owned()
}

fn root() -> String {
    "/".to_owned()
}

/// The upstream's response, for the response hook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a response: `status` and `headers`")]
pub struct CaseResponse {
    /// The upstream's status code.
    pub status: u16,
    /// Its headers, one value each.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Its body; the body hook runs on it if the filter declares one.
    pub body: Option<String>,
}

/// How the harness answers one upstream's calls: a response, or an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a call answer: `status` (with `headers`, `body`) or `error`"
)]
pub struct CaseCallAnswer {
    /// The status of the answer.
    pub status: Option<u16>,
    /// Its headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Its body.
    #[serde(default)]
    pub body: String,
    /// Instead of an answer, this error: `unknown_upstream`, `invalid_request`, `timeout`,
    /// `response_too_large`, `too_many_calls` or `unavailable`.
    pub error: Option<CaseCallError>,
}

/// A call's failure in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseCallError {
    /// No such upstream.
    UnknownUpstream,
    /// The request was invalid.
    InvalidRequest,
    /// No answer in time.
    Timeout,
    /// The answer was too large.
    ResponseTooLarge,
    /// Too many calls in flight.
    TooManyCalls,
    /// The upstream was unreachable.
    Unavailable,
}

impl CaseCallAnswer {
    fn answer(&self, upstream: &str) -> Result<CallResponse, CallError> {
        if let Some(error) = self.error {
            let what = format!("declared by the case for {upstream:?}");
            return Err(match error {
                CaseCallError::UnknownUpstream => CallError::UnknownUpstream(upstream.to_owned()),
                CaseCallError::InvalidRequest => CallError::InvalidRequest(what),
                CaseCallError::Timeout => CallError::Timeout,
                CaseCallError::ResponseTooLarge => CallError::ResponseTooLarge,
                CaseCallError::TooManyCalls => CallError::TooManyCalls,
                CaseCallError::Unavailable => CallError::Unavailable(what),
            });
        }
        let status = StatusCode::from_u16(self.status.unwrap_or(200)).map_err(|_| {
            CallError::InvalidRequest(format!("the case's status for {upstream:?}"))
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        Ok(CallResponse {
            status,
            headers,
            body: Bytes::from(self.body.clone()),
        })
    }
}

/// What the filter should do. Only what is given is checked.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "expectations: `action`, `status`, `headers`, ..."
)]
pub struct Expect {
    /// `continue`, `respond` or `delay`.
    pub action: Option<ActionKind>,
    /// The status of the filter's own response (also after a delay).
    pub status: Option<u16>,
    /// The body the client gets: the filter's own response's, or the upstream's after the
    /// response body hook.
    pub body: Option<String>,
    /// The request body sent upstream, after the request body hook.
    pub request_body: Option<String>,
    /// How long the filter holds the request.
    #[serde(default, deserialize_with = "duration")]
    pub delay: Option<Duration>,
    /// The upstream the request goes to after the filter.
    pub upstream: Option<String>,
    /// Request headers after the filter; `null` means absent.
    #[serde(default)]
    pub request_headers: BTreeMap<String, Option<String>>,
    /// Headers of the response the client gets, as far as the filter decides them: its own
    /// response, or the upstream's after the response hook, plus what it added; `null` means
    /// absent.
    #[serde(default)]
    pub response_headers: BTreeMap<String, Option<String>>,
    /// Text each of which some line the filter logged during the case must contain.
    #[serde(default)]
    pub logs: Vec<String>,
    /// Metric values after the case.
    #[serde(default)]
    pub metrics: Vec<MetricExpect>,
    /// Text the filter's failure (trap, timeout, invalid action) must contain: the case
    /// expects the filter to fail.
    pub failure: Option<String>,
    /// The calls the filter made, in order, each as `METHOD upstream path`.
    pub calls: Option<Vec<String>>,
}

/// What the filter did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Let it through.
    Continue,
    /// Answered it.
    Respond,
    /// Held it (and maybe answered after).
    Delay,
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActionKind::Continue => "continue",
            ActionKind::Respond => "respond",
            ActionKind::Delay => "delay",
        })
    }
}

/// A metric sample's expected value.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a metric: `name`, `labels` and `value`"
)]
pub struct MetricExpect {
    /// The name as exposed (`weft_filter_<name>_total` for a counter).
    pub name: String,
    /// Labels the sample must have (others may be present).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The value (summed over the matching samples).
    pub value: f64,
}

/// Deserializes `100ms`, `1s`, `1h` into a duration. The text is parsed inside the visitor, so
/// an error carries the field's path and position.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 100ms, 1s or 1h")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            weft_yaml::parse_duration(text).map_err(E::custom)
        }
    }
    struct Wrapped(Duration);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Text).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

impl CaseFile {
    /// Read and parse a cases file; errors name the file, line and field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_yaml(&read(path, "the cases file")?, path)
    }

    /// Parse a cases file's text; `origin` names it in errors.
    pub fn from_yaml(src: &str, origin: &Path) -> Result<Self, ConfigError> {
        parse_yaml(src, origin)
    }
}

/// Read a filter's config for `filter test`: YAML (JSON is YAML too), as under `config:` in
/// the proxy's config file.
pub fn load_filter_config(path: &Path) -> Result<serde_json::Value, ConfigError> {
    parse_yaml(&read(path, "the filter config")?, path)
}

/// The text of `path`, or an error saying `what` could not be read.
fn read(path: &Path, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: None,
        column: None,
        field: String::new(),
        message: format!("cannot read {what}: {e}"),
    })
}

/// One difference between what a case expected and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What was compared (`status`, `request header x-user`, ...).
    pub what: String,
    /// What the case expected, shown as the `-` line.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case's name.
    pub name: String,
    /// Empty when it passed.
    pub mismatches: Vec<Mismatch>,
}

/// The outcome of a cases file.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One per case, in order.
    pub cases: Vec<CaseOutcome>,
}

impl Report {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.mismatches.is_empty())
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| !c.mismatches.is_empty())
            .count()
    }
}

impl fmt::Display for Report {
    /// One line per case; under each failed one, `-` the expectation and `+` what happened.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            if case.mismatches.is_empty() {
                writeln!(f, "ok    {}", case.name)?;
                continue;
            }
            writeln!(f, "FAIL  {}", case.name)?;
            for m in &case.mismatches {
                writeln!(f, "      {}:", m.what)?;
                writeln!(f, "      - {}", m.expected)?;
                writeln!(f, "      + {}", m.actual)?;
            }
        }
        let failed = self.failed();
        write!(f, "{} passed, {failed} failed", self.cases.len() - failed)
    }
}

/// Run every case in order on `harness`.
pub fn run(harness: &Harness, file: &CaseFile) -> Report {
    let cases = file
        .cases
        .iter()
        .map(|case| CaseOutcome {
            name: case.name.clone(),
            mismatches: run_case(harness, case),
        })
        .collect();
    Report { cases }
}

fn run_case(harness: &Harness, case: &Case) -> Vec<Mismatch> {
    let mut out = Mismatches::default();
    let mut request = match build_request(&case.request) {
        Ok(r) => r,
        Err(message) => {
            out.push("request", "a valid request", message);
            return out.0;
        }
    };
    if let Some(by) = case.advance {
        harness.advance(by);
    }
    harness.take_logs();
    harness.take_calls();
    let answers = case.calls.clone();
    harness.answer_calls(move |call| match answers.get(&*call.upstream) {
        Some(answer) => answer.answer(&call.upstream),
        None => Err(CallError::Unavailable(format!(
            "the case declares no answer for calls to {:?} (`calls:`)",
            call.upstream
        ))),
    });
    let expect = &case.expect;

    // The request hook, then the response hook if the request went on and the case has a
    // response. What the client would get ends up in `client`.
    let mut request_body = case.request.body.as_ref().map(|b| Bytes::from(b.clone()));
    let verdict =
        harness
            .on_request(&mut request)
            .and_then(|verdict| match (verdict, &mut request_body) {
                (Verdict::Continue, Some(body)) => harness.on_request_body(&mut request, body),
                (verdict, _) => Ok(verdict),
            });
    let mut client: Option<ResponseHead> = None;
    let mut body: Option<String> = None;
    let outcome = match verdict {
        Err(failure) => Err(failure.to_string()),
        Ok(Verdict::Continue) => {
            if let Some(upstream) = &case.response {
                match build_response(upstream) {
                    Ok(mut head) => {
                        let mut upstream_body =
                            Bytes::from(upstream.body.clone().unwrap_or_default());
                        let verdict =
                            harness
                                .on_response(&request, &mut head)
                                .and_then(|verdict| match verdict {
                                    Verdict::Continue if upstream.body.is_some() => harness
                                        .on_response_body(&request, &mut head, &mut upstream_body),
                                    verdict => Ok(verdict),
                                });
                        match verdict {
                            Ok(Verdict::Respond(local)) => {
                                body = Some(text(local.body()));
                                client = Some(head_of(&local));
                            }
                            Ok(_) => {
                                body = Some(text(&upstream_body));
                                client = Some(head);
                            }
                            Err(failure) => {
                                out.push("response hook", "no failure", failure.to_string())
                            }
                        }
                    }
                    Err(message) => out.push("response", "a valid response", message),
                }
            }
            Ok((ActionKind::Continue, None))
        }
        Ok(Verdict::Respond(local)) => {
            body = Some(text(local.body()));
            client = Some(head_of(&local));
            Ok((ActionKind::Respond, None))
        }
        // The harness settles calls before it returns a verdict.
        Ok(Verdict::Call(_)) => Err("a call was left unanswered".to_owned()),
        Ok(Verdict::Delay(d, then)) => {
            if let Some(local) = &then {
                body = Some(text(local.body()));
                client = Some(head_of(local));
            }
            Ok((ActionKind::Delay, Some(d)))
        }
    };

    let (action, delay) = match (outcome, &expect.failure) {
        (Err(failure), Some(wanted)) => {
            if !failure.contains(wanted.as_str()) {
                out.push("failure", format!("containing {wanted:?}"), failure);
            }
            return out.0;
        }
        (Err(failure), None) => {
            out.push(
                "action",
                describe_expected_action(expect),
                format!("the filter failed: {failure}"),
            );
            return out.0;
        }
        (Ok(_), Some(wanted)) => {
            out.push(
                "failure",
                format!("a failure containing {wanted:?}"),
                "no failure",
            );
            return out.0;
        }
        (Ok(done), None) => done,
    };

    if let Some(want) = expect.action
        && want != action
    {
        out.push("action", want.to_string(), action.to_string());
    }
    let status = client.as_ref().map(|h| h.status.as_u16());
    if expect.status.is_some() && expect.status != status {
        out.push(
            "status",
            show_opt(expect.status),
            match status {
                Some(s) => s.to_string(),
                None => format!("none ({action})"),
            },
        );
    }
    if let Some(want) = &expect.body
        && body.as_deref() != Some(want.as_str())
    {
        out.push(
            "body",
            format!("{want:?}"),
            match &body {
                Some(b) => format!("{b:?}"),
                None => format!("none ({action})"),
            },
        );
    }
    if expect.delay.is_some() && expect.delay != delay {
        out.push(
            "delay",
            show_opt(expect.delay.map(humantime::format_duration)),
            show_opt(delay.map(humantime::format_duration)),
        );
    }
    if let Some(want) = &expect.request_body {
        let got = request_body.as_deref().map(text);
        if got.as_deref() != Some(want.as_str()) {
            out.push(
                "request body",
                format!("{want:?}"),
                got.map_or_else(
                    || "none (the case sends no body)".to_owned(),
                    |b| format!("{b:?}"),
                ),
            );
        }
    }
    if let Some(want) = &expect.upstream
        && request.chosen_upstream() != Some(want.as_str())
    {
        out.push(
            "upstream",
            want.clone(),
            show_opt(request.chosen_upstream()),
        );
    }
    if let Some(want) = &expect.calls {
        let made: Vec<String> = harness
            .take_calls()
            .iter()
            .map(|c| format!("{} {} {}", c.method, c.upstream, c.path))
            .collect();
        if &made != want {
            out.push("calls", format!("{want:?}"), format!("{made:?}"));
        }
    }
    for (name, want) in &expect.request_headers {
        let got = request.head.headers.get(name.as_str()).map(show_value);
        compare_header(&mut out, "request header", name, want.as_deref(), got);
    }
    // Headers the filter added with `add-response-header` reach whatever response is sent.
    let mut response_headers = client.map(|h| h.headers).unwrap_or_default();
    for (name, value) in &request.directives.response_headers {
        response_headers.append(name.clone(), value.clone());
    }
    for (name, want) in &expect.response_headers {
        let got = response_headers.get(name.as_str()).map(show_value);
        compare_header(&mut out, "response header", name, want.as_deref(), got);
    }
    let logs = harness.take_logs();
    for want in &expect.logs {
        if !logs.iter().any(|line| line.message.contains(want.as_str())) {
            let mut seen = String::new();
            for line in &logs {
                let _ = write!(seen, "\n        {}: {}", line.level.as_str(), line.message);
            }
            out.push(
                "logs",
                format!("a line containing {want:?}"),
                if logs.is_empty() {
                    "no lines".to_owned()
                } else {
                    format!("{} lines:{seen}", logs.len())
                },
            );
        }
    }
    if !expect.metrics.is_empty() {
        let scrape = harness.scrape();
        for metric in &expect.metrics {
            let labels: Vec<(&str, &str)> = metric
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got = scrape.value(&metric.name, &labels);
            if got != Some(metric.value) {
                out.push(
                    format!("metric {}{}", metric.name, show_labels(&metric.labels)),
                    metric.value.to_string(),
                    show_opt(got),
                );
            }
        }
    }
    out.0
}

#[derive(Default)]
struct Mismatches(Vec<Mismatch>);

impl Mismatches {
    fn push(
        &mut self,
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) {
        self.0.push(Mismatch {
            what: what.into(),
            expected: expected.into(),
            actual: actual.into(),
        });
    }
}

fn compare_header(
    out: &mut Mismatches,
    kind: &str,
    name: &str,
    want: Option<&str>,
    got: Option<String>,
) {
    if want != got.as_deref() {
        let show = |v: Option<&str>| v.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"));
        out.push(format!("{kind} {name}"), show(want), show(got.as_deref()));
    }
}

fn describe_expected_action(expect: &Expect) -> String {
    expect
        .action
        .map_or_else(|| "no failure".to_owned(), |a| a.to_string())
}

fn show_opt<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn show_value(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(","))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn head_of(local: &http::Response<Bytes>) -> ResponseHead {
    ResponseHead {
        status: local.status(),
        version: local.version(),
        headers: local.headers().clone(),
    }
}

fn build_request(spec: &CaseRequest) -> Result<TestRequest, String> {
    let method = Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", spec.method))?;
    let uri = Uri::try_from(spec.path.as_str())
        .map_err(|e| format!("invalid path {:?}: {e}", spec.path))?;
    let mut request = TestRequest::get("/");
    request.head.method = method;
    request.head.uri = uri;
    request.head.headers = headers(&spec.headers)?;
    if let Some(client) = &spec.client {
        request.info.client = Some(client.parse().map_err(|_| {
            format!("invalid client {client:?}: write an address and port, like 10.0.0.7:5000")
        })?);
    }
    if let Some(route) = &spec.route {
        request.info.route = Some(route.as_str().into());
    }
    if let Some(id) = &spec.peer_identity {
        request.info.peer_identity = Some(id.as_str().into());
    }
    if let Some(upstream) = &spec.upstream {
        request.directives.upstream = Some(upstream.as_str().into());
    }
    Ok(request)
}

fn build_response(spec: &CaseResponse) -> Result<ResponseHead, String> {
    let mut head = response(200);
    head.status =
        StatusCode::from_u16(spec.status).map_err(|_| format!("invalid status {}", spec.status))?;
    head.headers = headers(&spec.headers)?;
    Ok(head)
}

fn headers(map: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in map {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("invalid value for header {name}: {value:?}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}
