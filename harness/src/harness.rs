//! The filter test harness: a filter on the proxy's own runtime: the same wasmtime engine,
//! host functions, token buckets and metrics the proxy runs, in-process and without sockets.
//! Synthetic requests go in; the verdict, the edited request, the filter's log lines and
//! metrics come out. Time moves only when the test says ([`Harness::advance`]) and randomness
//! follows a seed ([`Builder::seed`]), so refills, expiry and percentages test instantly and
//! the same way on every run.
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_harness::{Decision, Harness, TestRequest};
//!
//! let harness = Harness::builder("ratelimit", "target/wasm32-wasip2/guest/rate_limit.wasm")
//!     .config(serde_json::json!({
//!         "limits": [{ "name": "per_client", "key": ["client_address"], "capacity": 1,
//!                      "refill": { "amount": 1, "interval": "1s" } }]
//!     }))
//!     .load()
//!     .expect("the filter accepts its config");
//! let decide = || harness.decide(&mut TestRequest::get("/")).expect("no failure");
//! assert_eq!(decide(), Decision::Continue);
//! assert_eq!(decide(), Decision::Respond(429));
//! harness.advance(Duration::from_secs(1));
//! assert_eq!(decide(), Decision::Continue);
//! ```

//!
//! `weft filter test` runs YAML cases on it ([`cases`](crate::cases)).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use weft_runtime::metrics::FilterMetrics;

use crate::Scrape;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use weft_runtime::{Direction, FailurePolicy, Isolation};
use weft_runtime::{
    FilterSpec, Lease, LoadedFilter, LogSink, ManualClock, Runtime, RuntimeOptions, SeededEntropy,
    block_on, lock,
};

/// What the harness's methods take and return, from the proxy's runtime.
pub use weft_runtime::{
    CallError, CallRequest, CallResponse, Directives, FilterFailure, LoadError, LogLevel,
    RequestHead, RequestInfo, ResponseHead, SentRequest, Verdict,
};

/// How the harness answers a filter's outbound calls ([`Harness::answer_calls`]).
pub type CallAnswer = dyn Fn(&CallRequest) -> Result<CallResponse, CallError> + Send + Sync;

/// The calls a filter made, and how they are answered.
#[derive(Default)]
struct Calls {
    answer: Option<Arc<CallAnswer>>,
    made: Vec<CallRequest>,
}

/// One configured filter on a runtime of its own, with a manual clock, seeded randomness and
/// a log recorder.
pub struct Harness {
    filter: Arc<LoadedFilter>,
    runtime: Arc<Runtime>,
    clock: Arc<ManualClock>,
    metrics: Arc<FilterMetrics>,
    logs: Arc<LogRecorder>,
    calls: Arc<Mutex<Calls>>,
}

/// The seed randomness follows unless [`Builder::seed`] says otherwise.
pub const DEFAULT_SEED: u64 = 0x5eed;

/// One line a filter logged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Keeps every line the filters of one harness log.
#[derive(Debug, Default)]
struct LogRecorder {
    lines: Mutex<Vec<LogLine>>,
}

impl LogSink for LogRecorder {
    fn log(&self, _filter: &str, level: LogLevel, message: &str) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(LogLine {
                level,
                message: message.to_owned(),
            });
    }
}

/// How to set up a [`Harness`]: [`Harness::builder`], then [`Builder::load`].
#[derive(Debug, Clone)]
pub struct Builder {
    name: String,
    wasm: String,
    config: serde_json::Value,
    seed: u64,
    wall: SystemTime,
}

impl Builder {
    /// The config `configure` gets (default: JSON `null`, as a filter without `config:`).
    #[must_use]
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// The seed of the filter's randomness (`random-u64`, `random-bytes`); default
    /// [`DEFAULT_SEED`]. The same seed gives the same numbers in the same order.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The wall-clock time the filter sees at the start; default [`HARNESS_EPOCH_SECS`].
    #[must_use]
    pub fn wall_time(mut self, wall: SystemTime) -> Self {
        self.wall = wall;
        self
    }

    /// Compile the module and run `configure`: an error is what the proxy would refuse to
    /// start with (a compile error, or the filter's own message naming the config field).
    pub fn load(self) -> Result<Harness, LoadError> {
        let clock = Arc::new(ManualClock::new(self.wall));
        let metrics = Arc::new(FilterMetrics::new());
        let logs = Arc::new(LogRecorder::default());
        let runtime = Arc::new(Runtime::new(
            RuntimeOptions {
                clock: clock.clone(),
                entropy: Arc::new(SeededEntropy::new(self.seed)),
                log_sink: Some(logs.clone()),
                ..RuntimeOptions::without_cache()
            },
            metrics.clone(),
        )?);
        let filter = Harness::configure(&runtime, &self.name, &self.wasm, &self.config)?;
        Ok(Harness {
            filter,
            runtime,
            clock,
            metrics,
            logs,
            calls: Arc::default(),
        })
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// The wall-clock time a harness starts at: 2026-01-01T00:00:00Z.
pub const HARNESS_EPOCH_SECS: u64 = 1_767_225_600;

impl Harness {
    /// Set up filter `name` from the component at `wasm` (a path).
    pub fn builder(name: &str, wasm: &str) -> Builder {
        Builder {
            name: name.to_owned(),
            wasm: wasm.to_owned(),
            config: serde_json::Value::Null,
            seed: DEFAULT_SEED,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(HARNESS_EPOCH_SECS),
        }
    }

    /// Load `wasm` as filter `name` and run `configure` with `config`. The clock starts at
    /// monotonic zero and wall time [`HARNESS_EPOCH_SECS`], and moves only with
    /// [`Harness::advance`]; randomness follows [`DEFAULT_SEED`].
    pub fn load(name: &str, wasm: &str, config: serde_json::Value) -> Result<Self, LoadError> {
        Self::builder(name, wasm).config(config).load()
    }

    fn configure(
        runtime: &Runtime,
        name: &str,
        wasm: &str,
        config: &serde_json::Value,
    ) -> Result<Arc<LoadedFilter>, LoadError> {
        let module = runtime.load_module(wasm.as_ref())?;
        runtime.load_filter(spec(name, module, config))
    }

    /// Configure the same module again with another config, as a per-route override would:
    /// same filter name, same runtime, so it shares the first one's token buckets.
    pub fn reconfigure(&self, wasm: &str, config: serde_json::Value) -> Result<Self, LoadError> {
        let filter = Self::configure(&self.runtime, self.filter.name(), wasm, &config)?;
        Ok(self.sibling(filter))
    }

    /// Configure this harness's already compiled module again with `config`, on the same runtime
    /// and under the same filter name: [`Harness::reconfigure`] without compiling the module
    /// again (about a second per load for a large filter), for tests that try many configs.
    pub fn with_config(&self, config: serde_json::Value) -> Result<Self, LoadError> {
        let module = self.filter.module().clone();
        let filter = self
            .runtime
            .load_filter(spec(self.filter.name(), module, &config))?;
        Ok(self.sibling(filter))
    }

    /// Another filter on this harness's runtime, clock, metrics and log record.
    fn sibling(&self, filter: Arc<LoadedFilter>) -> Self {
        Self {
            filter,
            runtime: self.runtime.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            logs: self.logs.clone(),
            calls: self.calls.clone(),
        }
    }

    /// Answer the filter's outbound calls ([`Verdict::Call`]) with `answer`, as a fake
    /// upstream would; the harness then calls `on-call-response` with the answer, as the
    /// proxy does. Without an answer, calls fail with [`CallError::Unavailable`].
    pub fn answer_calls(
        &self,
        answer: impl Fn(&CallRequest) -> Result<CallResponse, CallError> + Send + Sync + 'static,
    ) {
        lock(&self.calls).answer = Some(Arc::new(answer));
    }

    /// The calls the filter made so far, in order; clears the record.
    pub fn take_calls(&self) -> Vec<CallRequest> {
        std::mem::take(&mut lock(&self.calls).made)
    }

    /// Make the calls a request hook asked for, hand each result to `on-call-response`, and
    /// return the verdict that takes the hook's place.
    fn settle_calls(
        &self,
        lease: &mut Lease,
        request: &mut TestRequest,
        mut verdict: Result<Verdict, FilterFailure>,
    ) -> Result<Verdict, FilterFailure> {
        while let Ok(Verdict::Call(call)) = verdict {
            let result = call.and_then(|call| {
                let answer = {
                    let mut calls = lock(&self.calls);
                    calls.made.push(call.clone());
                    calls.answer.clone()
                };
                match answer {
                    Some(answer) => answer(&call),
                    None => Err(CallError::Unavailable(format!(
                        "the harness has no answer for calls to {:?} (Harness::answer_calls)",
                        call.upstream
                    ))),
                }
            });
            self.filter.record_call("harness", &result);
            verdict = block_on(self.filter.on_call_response(
                lease,
                &mut request.head,
                &mut request.directives,
                &request.info,
                result,
            ));
        }
        verdict
    }

    /// The loaded filter.
    pub fn filter(&self) -> &Arc<LoadedFilter> {
        &self.filter
    }

    /// Move the filter's clocks (monotonic and wall) forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Run `on-request-headers` on `request`, which keeps the filter's edits. As in the proxy,
    /// a filter that did not declare the hook is not called: the verdict is `Continue`.
    pub fn on_request(&self, request: &mut TestRequest) -> Result<Verdict, FilterFailure> {
        if !self.filter.hooks().request_headers {
            return Ok(Verdict::Continue);
        }
        let mut lease = Lease::with_state(request.state.take());
        let verdict = block_on(self.filter.on_request_headers(
            &mut lease,
            &mut request.head,
            &mut request.directives,
            &request.info,
        ));
        let verdict = self.settle_calls(&mut lease, request, verdict);
        *request.state.get_mut() = lease.take_state();
        verdict
    }

    /// Run `on-request-body` on the whole request `body`, which keeps the filter's
    /// replacement. Only for a filter that declared the hook, as in the proxy.
    pub fn on_request_body(
        &self,
        request: &mut TestRequest,
        body: &mut Bytes,
    ) -> Result<Verdict, FilterFailure> {
        if !self.filter.hooks().request_body {
            return Ok(Verdict::Continue);
        }
        let mut lease = Lease::with_state(request.state.take());
        let verdict = block_on(self.filter.on_request_body(
            &mut lease,
            &mut request.head,
            &mut request.directives,
            &request.info,
            body,
        ));
        let verdict = self.settle_calls(&mut lease, request, verdict);
        *request.state.get_mut() = lease.take_state();
        verdict
    }

    /// Run `on-response-headers` for `request` on `response`, which keeps the filter's edits.
    /// Only for a filter that declared the hook, as in the proxy.
    pub fn on_response(
        &self,
        request: &TestRequest,
        response: &mut ResponseHead,
    ) -> Result<Verdict, FilterFailure> {
        if !self.filter.hooks().response_headers {
            return Ok(Verdict::Continue);
        }
        let mut lease = Lease::with_state(request.state.take());
        let verdict = block_on(self.filter.on_response_headers(
            &mut lease,
            &Arc::new(request.sent()),
            &request.info,
            response,
        ));
        request.state.replace(lease.take_state());
        verdict
    }

    /// Run `on-response-body` for `request` on `response` and its whole `body`, which keep the
    /// filter's edits. Only for a filter that declared the hook, as in the proxy.
    pub fn on_response_body(
        &self,
        request: &TestRequest,
        response: &mut ResponseHead,
        body: &mut Bytes,
    ) -> Result<Verdict, FilterFailure> {
        if !self.filter.hooks().response_body {
            return Ok(Verdict::Continue);
        }
        let mut lease = Lease::with_state(request.state.take());
        let verdict = block_on(self.filter.on_response_body(
            &mut lease,
            &Arc::new(request.sent()),
            &request.info,
            response,
            body,
        ));
        request.state.replace(lease.take_state());
        verdict
    }

    /// Run `on-request-headers` and say what the verdict was.
    pub fn decide(&self, request: &mut TestRequest) -> Result<Decision, FilterFailure> {
        self.on_request(request)
            .map(|verdict| Decision::from(&verdict))
    }

    /// The metrics the filter reported, as the proxy would serve them.
    pub fn scrape(&self) -> Scrape {
        Scrape {
            text: self.metrics.encode(),
        }
    }

    /// Every line the filter has logged so far, at every level, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// [`Harness::logs`], emptying the record.
    pub fn take_logs(&self) -> Vec<LogLine> {
        std::mem::take(
            &mut *self
                .logs
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// How the harness loads a filter: pooled, failing closed, with a budget generous enough for a
/// loaded test machine (a descheduled thread counts against a wall-clock budget).
fn spec<'a>(
    name: &'a str,
    module: Arc<weft_runtime::Module>,
    config: &'a serde_json::Value,
) -> FilterSpec<'a> {
    FilterSpec {
        name,
        module,
        config,
        failure_policy: FailurePolicy::FailClosed,
        isolation: Isolation::Pooled,
        time_budget: Duration::from_secs(1),
        max_memory_bytes: 64 << 20,
    }
}

/// A synthetic request: its head as the proxy holds it, and the facts filters can read.
#[derive(Debug, Clone)]
pub struct TestRequest {
    /// Method, target, headers.
    pub head: RequestHead,
    /// What the filter asked for: the chosen upstream, response headers to add.
    pub directives: Directives,
    /// Client address, listener, route.
    pub info: RequestInfo,
    /// The filter's state for this request (`request.state`), carried from hook to hook as
    /// the proxy carries it.
    pub state: std::cell::RefCell<Option<Vec<u8>>>,
}

impl TestRequest {
    /// `method path` from client `127.0.0.1:40000` on listener `inbound`, route `default`,
    /// upstream `backend`, HTTP/1.1, no headers.
    pub fn new(method: &str, path: &str) -> Self {
        let head = RequestHead {
            method: Method::from_bytes(method.as_bytes()).expect("test request: valid method"),
            uri: Uri::try_from(path).expect("test request: valid path"),
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
        };
        let directives = Directives {
            upstream: Some("backend".into()),
            response_headers: HeaderMap::new(),
        };
        let info = RequestInfo {
            client: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
            listener: "inbound".into(),
            direction: Direction::Inbound,
            route: Some("default".into()),
            peer_identity: None,
        };
        Self {
            head,
            directives,
            info,
            state: std::cell::RefCell::new(None),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Add a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test request: valid header name"),
            HeaderValue::from_str(value).expect("test request: valid header value"),
        );
        self
    }

    /// Add a header whose value is raw bytes (e.g. not UTF-8; HTTP allows bytes 0x80-0xFF).
    #[must_use]
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.head.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test request: valid header name"),
            HeaderValue::from_bytes(value).expect("test request: valid header bytes"),
        );
        self
    }

    /// Set the client address.
    #[must_use]
    pub fn client(mut self, addr: &str) -> Self {
        self.info.client = Some(addr.parse().expect("test request: valid socket address"));
        self
    }

    /// The caller's authenticated SPIFFE ID, as a sidecar's mTLS listener reports it (what
    /// `request.peer-identity()` returns); by default none, a plaintext caller.
    #[must_use]
    pub fn peer_identity(mut self, spiffe_id: &str) -> Self {
        self.info.peer_identity = Some(spiffe_id.into());
        self
    }

    /// Set the matched route.
    #[must_use]
    pub fn route(mut self, route: &str) -> Self {
        self.info.route = Some(route.into());
        self
    }

    /// Set the route's upstream.
    #[must_use]
    pub fn upstream(mut self, upstream: &str) -> Self {
        self.directives.upstream = Some(upstream.into());
        self
    }

    /// The first value of request header `name`, as text.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)?.to_str().ok()
    }

    /// The first value of response header `name` that the filter asked to add.
    pub fn added_response_header(&self, name: &str) -> Option<&str> {
        self.directives.response_headers.get(name)?.to_str().ok()
    }

    /// The upstream the request goes to now.
    pub fn chosen_upstream(&self) -> Option<&str> {
        self.directives.upstream.as_deref()
    }

    /// The request as response hooks see it: as it went upstream.
    fn sent(&self) -> SentRequest {
        SentRequest {
            head: self.head.clone(),
            upstream: self.directives.upstream.clone(),
        }
    }
}

/// A response head with this status and no headers.
pub fn response(status: u16) -> ResponseHead {
    ResponseHead {
        status: StatusCode::from_u16(status).expect("test response: valid status"),
        version: Version::HTTP_11,
        headers: HeaderMap::new(),
    }
}

/// What a verdict is, for assertions: `Continue`, `Respond(status)`, `Delay(duration)` or
/// `DelayThenRespond(duration, status)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// [`Verdict::Continue`].
    Continue,
    /// [`Verdict::Respond`] with this status.
    Respond(u16),
    /// [`Verdict::Delay`] without a response.
    Delay(Duration),
    /// [`Verdict::Delay`] with a response of this status.
    DelayThenRespond(Duration, u16),
}

impl From<&Verdict> for Decision {
    fn from(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Continue => Decision::Continue,
            Verdict::Respond(r) => Decision::Respond(r.status().as_u16()),
            Verdict::Delay(d, None) => Decision::Delay(*d),
            Verdict::Delay(d, Some(r)) => Decision::DelayThenRespond(*d, r.status().as_u16()),
            // The harness makes calls itself and returns the verdict that follows them.
            Verdict::Call(_) => Decision::Continue,
        }
    }
}
