//! `weft:filter@0.3.0` through the proxy, driven by the `callout` guest: outbound calls and
//! each way they fail, per-request state across pooled instances, the shared store under
//! concurrent compare-and-swap; and filters built against 0.2.0 loading unchanged, while an
//! older contract is refused with a message naming the versions.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use http::StatusCode;
use weft_tests::{
    AuthService, Upstream, closed_addr, get, guests, proxy_start_error, scrape, start_proxy,
};

use crate::{filter, one_route};

/// `one_route` with the `callout` guest, plus upstreams `authz` (at `authz`) and `nowhere`
/// (refusing connections).
fn callout(app: &Upstream, authz: SocketAddr) -> String {
    let mut yaml = one_route(app.addr(), &[filter("callout", guests::CALLOUT, "")]);
    yaml.push_str(&format!(
        "  - name: authz\n    endpoints: [\"{authz}\"]\n  - name: nowhere\n    endpoints: [\"{}\"]\n",
        closed_addr()
    ));
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_gets_the_upstream_answer_or_a_typed_error_for_each_failure() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let authz = AuthService::start().await?;
    let proxy = start_proxy(&callout(&app, authz.addr())).await?;

    // An answer, whatever its status, comes back whole.
    let reply = get(
        proxy.addr(),
        "/x",
        &[
            ("x-call", "app"),
            ("x-call-path", "/status/201"),
            ("x-call-echo", "hi"),
        ],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = reply.seen()?;
    assert_eq!(seen.header("x-call-status"), Some("201"));
    assert!(
        seen.header("x-call-body")
            .is_some_and(|b| b.contains("\"/status/201\"") && b.contains("x-echo")),
        "the call's body is the upstream's description of the call: {:?}",
        seen.header("x-call-body")
    );
    let reply = get(
        proxy.addr(),
        "/x",
        &[("x-call", "authz"), ("x-call-auth", "Bearer nope")],
    )
    .await?;
    assert_eq!(reply.seen()?.header("x-call-status"), Some("403"));

    let failures = [
        (vec![("x-call", "no-such-upstream")], "unknown-upstream"),
        (vec![("x-call", "nowhere")], "unavailable"),
        (
            vec![
                ("x-call", "app"),
                ("x-call-path", "/slow/3000"),
                ("x-call-timeout-ms", "100"),
            ],
            "timeout",
        ),
        (
            vec![("x-call", "authz"), ("x-call-auth", "Bearer big")],
            "response-too-large",
        ),
        (
            vec![("x-call", "app"), ("x-call-path", "no-slash")],
            "invalid-request",
        ),
        (
            vec![("x-call", "app"), ("x-call-timeout-ms", "600000")],
            "invalid-request",
        ),
    ];
    for (headers, kind) in failures {
        let reply = get(proxy.addr(), "/x", &headers).await?;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{headers:?}: {}",
            reply.text()
        );
        assert_eq!(
            reply.seen()?.header("x-call-error"),
            Some(kind),
            "{headers:?}: the filter sees the failure's kind and decides"
        );
    }
    let reply = get(
        proxy.addr(),
        "/x",
        &[("x-call", "nowhere"), ("x-call-deny", "1")],
    )
    .await?;
    assert_eq!(
        reply.status,
        StatusCode::BAD_GATEWAY,
        "the filter's own answer to a failure"
    );
    assert_eq!(reply.text(), "call failed: unavailable\n");

    let metrics = scrape(proxy.admin()).await?;
    for (result, count) in [
        ("ok", 2.0),
        ("unknown_upstream", 1.0),
        ("unavailable", 2.0),
        ("timeout", 1.0),
        ("response_too_large", 1.0),
        ("invalid_request", 2.0),
    ] {
        assert_eq!(
            metrics.value(
                "weft_filter_outbound_calls_total",
                &[("filter", "callout"), ("result", result)]
            ),
            Some(count),
            "calls with result {result}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_chain_from_on_call_response_up_to_eight_per_request() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let authz = AuthService::start().await?;
    let proxy = start_proxy(&callout(&app, authz.addr())).await?;

    let reply = get(
        proxy.addr(),
        "/x",
        &[
            ("x-call", "authz"),
            ("x-call-auth", "Bearer good"),
            ("x-call-again", "7"),
        ],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.seen()?.header("x-call-calls"),
        Some("8"),
        "eight answers"
    );
    assert_eq!(authz.checks().len(), 8);

    // A ninth call is a filter failure (the filter is fail-closed by default): the request
    // does not reach the upstream.
    let before = app.requests();
    let reply = get(
        proxy.addr(),
        "/x",
        &[
            ("x-call", "authz"),
            ("x-call-auth", "Bearer good"),
            ("x-call-again", "8"),
        ],
    )
    .await?;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text()
    );
    assert_eq!(app.requests(), before);
    assert_eq!(authz.checks().len(), 16, "the ninth was never sent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_reaches_the_response_hook_of_the_same_request_only() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let proxy = start_proxy(&callout(&app, closed_addr())).await?;
    let addr = proxy.addr();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..64 {
        requests.spawn(async move {
            let path = format!("/p/{i}");
            let reply = get(addr, &path, &[]).await;
            (path, reply)
        });
    }
    while let Some(done) = requests.join_next().await {
        let (path, reply) = done?;
        let reply = reply?;
        assert_eq!(
            reply.header("x-state"),
            Some(format!("GET {path}").as_str()),
            "each response hook read its own request's state"
        );
    }
    let reply = get(addr, "/big", &[("x-state-size", "70000")]).await?;
    assert_eq!(
        reply.header("x-state-error").map(|e| e.contains("invalid")),
        Some(true),
        "state over 64 KiB is refused: {:?}",
        reply.header("x-state-error")
    );
    assert_eq!(
        reply.header("x-state"),
        Some("GET /big"),
        "the last good state stays"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_increments_on_every_worker_end_at_the_exact_total()
-> anyhow::Result<()> {
    const CLIENTS: usize = 16;
    const EACH: usize = 25;
    let app = Upstream::start().await?;
    let proxy = start_proxy(&callout(&app, closed_addr())).await?;
    let addr = proxy.addr();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                let reply = get(addr, "/count", &[("x-count", "hits")]).await?;
                let n: u64 = reply
                    .header("x-count")
                    .ok_or_else(|| anyhow::anyhow!("no x-count: {}", reply.text()))?
                    .parse()?;
                seen.push(n);
            }
            anyhow::Ok(seen)
        });
    }
    let mut all = BTreeSet::new();
    while let Some(seen) = clients.join_next().await {
        for n in seen?? {
            assert!(all.insert(n), "value {n} given to two increments");
        }
    }
    let total = (CLIENTS * EACH) as u64;
    assert_eq!(all, (1..=total).collect(), "every increment counted once");
    let reply = get(addr, "/count", &[("x-store-get", "hits")]).await?;
    assert_eq!(
        reply.header("x-store-value"),
        Some(total.to_string().as_str())
    );

    let long_key = "k".repeat(600);
    let reply = get(addr, "/x", &[("x-store-set", &format!("{long_key}=v"))]).await?;
    assert_eq!(reply.header("x-store-error"), Some("InvalidKey"));
    let metrics = scrape(proxy.admin()).await?;
    assert_eq!(
        metrics.value(
            "weft_filter_store_refusals_total",
            &[("filter", "callout"), ("reason", "invalid_key")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("weft_filter_store_keys", &[("filter", "callout")]),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_built_against_0_2_load_and_run_unchanged() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let proxy = start_proxy(&one_route(
        app.addr(),
        &[
            filter("headers", guests::HEADERS_V02, ""),
            filter(
                "ratelimit",
                guests::RATE_LIMIT_V02,
                r#"config: { limits: [{ name: all, key: [path], capacity: 2, refill: { amount: 1, interval: 1h } }] }"#,
            ),
        ],
    ))
    .await?;
    let reply = get(proxy.addr(), "/v02", &[("x-weft-remove", "x")]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = reply.seen()?;
    assert_eq!(seen.header("x-weft-added"), Some("1"), "request edits");
    assert_eq!(seen.header("x-weft-remove"), None);
    assert_eq!(reply.header("x-weft-response"), Some("1"), "response edits");
    assert_eq!(reply.header("x-weft-saw-path"), Some("/v02"));
    assert_eq!(
        reply.header("x-weft-readonly"),
        Some("ok"),
        "edit errors convert"
    );
    assert_eq!(reply.header("x-weft-direction"), Some("inbound"));

    assert_eq!(get(proxy.addr(), "/v02", &[]).await?.status, StatusCode::OK);
    let limited = get(proxy.addr(), "/v02", &[]).await?;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "token buckets"
    );
    assert!(limited.header("retry-after").is_some());
    let metrics = scrape(proxy.admin()).await?;
    assert!(
        metrics
            .value("weft_token_bucket_keys", &[("filter", "ratelimit")])
            .is_some(),
        "the 0.2 filter's bucket family is reported"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_built_against_an_older_contract_is_refused_naming_the_versions() {
    let yaml = one_route(
        closed_addr(),
        &[filter("ancient", guests::OLD_CONTRACT, "")],
    );
    let message = proxy_start_error(&yaml).await;
    for needle in ["ancient", "weft:filter@0.1.0", "0.3.0", "0.2.0", "rebuild"] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
}

mod in_the_harness {
    //! The same capabilities in the test harness: calls answered by a fake upstream the test
    //! declares, and store expiry on the virtual clock.

    use std::time::Duration;

    use http::{HeaderMap, StatusCode};
    use weft_tests::guests;
    use weft_tests::harness::{CallError, CallResponse, Harness, TestRequest, Verdict};

    fn added(request: &TestRequest, name: &str) -> Option<String> {
        request
            .directives
            .response_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn calls_are_answered_by_the_tests_fake_upstream_and_recorded() {
        let harness =
            Harness::load("callout", guests::CALLOUT, serde_json::Value::Null).expect("loads");
        harness.answer_calls(|call| match &*call.upstream {
            "authz" => Ok(CallResponse {
                status: StatusCode::ACCEPTED,
                headers: HeaderMap::new(),
                body: bytes::Bytes::from_static(b"fine"),
            }),
            _ => Err(CallError::Timeout),
        });
        let mut request = TestRequest::get("/x")
            .header("x-call", "authz")
            .header("x-call-path", "/check?u=1");
        let verdict = harness.on_request(&mut request).expect("no failure");
        assert!(matches!(verdict, Verdict::Continue));
        assert_eq!(request.head.headers["x-call-status"], "202");
        assert_eq!(request.head.headers["x-call-body"], "fine");
        let calls = harness.take_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(&*calls[0].upstream, "authz");
        assert_eq!(calls[0].path.as_str(), "/check?u=1");

        let mut request = TestRequest::get("/x").header("x-call", "elsewhere");
        harness.on_request(&mut request).expect("no failure");
        assert_eq!(request.head.headers["x-call-error"], "timeout");
    }

    #[test]
    fn store_entries_expire_on_the_virtual_clock() {
        let harness =
            Harness::load("callout", guests::CALLOUT, serde_json::Value::Null).expect("loads");
        let mut set = TestRequest::get("/")
            .header("x-store-set", "session=abc")
            .header("x-store-ttl-ms", "1000");
        harness.on_request(&mut set).expect("no failure");
        let get = || {
            let mut request = TestRequest::get("/").header("x-store-get", "session");
            harness.on_request(&mut request).expect("no failure");
            added(&request, "x-store-value")
        };
        assert_eq!(get().as_deref(), Some("abc"));
        harness.advance(Duration::from_millis(999));
        assert_eq!(get().as_deref(), Some("abc"), "not yet");
        harness.advance(Duration::from_millis(1));
        assert_eq!(get().as_deref(), Some("absent"), "expired at its TTL");
    }

    #[test]
    fn state_set_in_the_request_hook_is_read_in_the_response_hook() {
        let harness =
            Harness::load("callout", guests::CALLOUT, serde_json::Value::Null).expect("loads");
        let mut request = TestRequest::get("/s");
        harness.on_request(&mut request).expect("no failure");
        let mut response = weft_tests::harness::response(200);
        harness
            .on_response(&request, &mut response)
            .expect("no failure");
        assert_eq!(response.headers["x-state"], "GET /s");
    }

    #[test]
    fn yaml_cases_declare_call_answers_and_expect_the_calls_made() {
        use std::path::Path;
        use weft_tests::harness::cases;

        const CASES: &str = r#"
cases:
  - name: an answer from the declared fake upstream
    request: { path: /a, headers: { x-call: authz, x-call-path: /check/a } }
    calls:
      authz: { status: 401, body: "who are you" }
    expect:
      action: continue
      request_headers: { x-call-status: "401", x-call-body: "who are you" }
      calls: ["GET authz /check/a"]
  - name: a declared error
    request: { path: /b, headers: { x-call: flags } }
    calls:
      flags: { error: timeout }
    expect: { request_headers: { x-call-error: timeout }, calls: ["GET flags /"] }
  - name: an upstream the case does not declare
    request: { path: /c, headers: { x-call: other, x-call-deny: "1" } }
    expect: { action: respond, status: 502, body: "call failed: unavailable\n" }
  - name: a wrong expectation is reported
    request: { path: /d, headers: { x-call: authz } }
    calls:
      authz: { status: 200 }
    expect: { calls: ["POST authz /"] }
"#;
        let harness =
            Harness::load("callout", guests::CALLOUT, serde_json::Value::Null).expect("loads");
        let file = cases::CaseFile::from_yaml(CASES, Path::new("cases.yaml")).expect("valid");
        let report = cases::run(&harness, &file);
        let failed: Vec<_> = report
            .cases
            .iter()
            .filter(|c| !c.mismatches.is_empty())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["a wrong expectation is reported"], "{report}");
        let shown = report.to_string();
        assert!(
            shown.contains("[\"POST authz /\"]") && shown.contains("[\"GET authz /\"]"),
            "the mismatch shows both lists: {shown}"
        );
    }
}
