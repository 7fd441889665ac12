//! The filter harness itself: the virtual clock, seeded randomness, captured logs and metrics,
//! how a guest's panic is reported, and YAML test cases with their failure reports.

use std::path::Path;
use std::time::Duration;

use weft_tests::guests;
use weft_tests::harness::{Decision, Harness, LogLevel, LogLine, TestRequest, cases};

/// Fault injection aborting half the requests at random: its decisions show the random stream.
fn coin(seed: u64) -> Harness {
    Harness::builder("coin", guests::FAULT_INJECTION)
        .config(serde_json::json!({ "abort": { "status": 503, "percentage": 50 } }))
        .seed(seed)
        .load()
        .expect("fault-injection accepts the config")
}

fn flips(harness: &Harness, n: usize) -> Vec<Decision> {
    (0..n)
        .map(|_| {
            harness
                .decide(&mut TestRequest::get("/"))
                .expect("no failure")
        })
        .collect()
}

#[test]
fn a_seed_makes_random_decisions_repeatable() {
    let first = flips(&coin(42), 64);
    assert_eq!(first, flips(&coin(42), 64), "same seed, same decisions");
    assert_ne!(first, flips(&coin(43), 64), "another seed, other decisions");
    // Both outcomes occur: the stream is random-looking, not constant.
    assert!(first.contains(&Decision::Continue), "{first:?}");
    assert!(first.contains(&Decision::Respond(503)), "{first:?}");
}

#[test]
fn time_moves_only_when_the_test_moves_it() {
    let harness = Harness::load(
        "limit",
        guests::RATE_LIMIT,
        serde_json::json!({ "limits": [{
            "name": "all", "key": [], "capacity": 1,
            "refill": { "amount": 1, "interval": "1h" },
        }]}),
    )
    .expect("rate-limit accepts the config");
    let decide = || {
        harness
            .decide(&mut TestRequest::get("/"))
            .expect("no failure")
    };
    assert_eq!(decide(), Decision::Continue);
    assert_eq!(decide(), Decision::Respond(429));
    // Real time passing changes nothing...
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(decide(), Decision::Respond(429));
    harness.advance(Duration::from_secs(3599));
    assert_eq!(decide(), Decision::Respond(429));
    // ...an hour of virtual time refills the bucket at once.
    harness.advance(Duration::from_secs(1));
    assert_eq!(decide(), Decision::Continue);
}

#[test]
fn log_lines_and_metrics_are_captured() {
    let harness = Harness::load("counter", guests::METRICS, serde_json::Value::Null)
        .expect("metrics guest loads");
    for path in ["/a", "/b"] {
        harness
            .decide(&mut TestRequest::get(path))
            .expect("no failure");
    }
    let info = |message: &str| LogLine {
        level: LogLevel::Info,
        message: message.to_owned(),
    };
    assert_eq!(
        harness.take_logs(),
        [info("saw request /a"), info("saw request /b")]
    );
    assert!(harness.logs().is_empty(), "take_logs empties the record");
    let scrape = harness.scrape();
    assert!(
        scrape.text.contains("filter=\"counter\""),
        "the filter's metrics carry its name:\n{}",
        scrape.text
    );
}

#[test]
fn a_guest_panic_names_the_filter_the_hook_and_the_message() {
    let harness =
        Harness::load("boom", guests::TRAP, serde_json::Value::Null).expect("trap guest loads");
    let failure = harness
        .decide(&mut TestRequest::get("/"))
        .expect_err("the guest panics");
    let text = failure.to_string();
    for part in [
        "\"boom\"",
        "on-request-headers",
        "trap filter panicked on purpose",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

/// A limit of one request an hour, for the YAML cases below.
fn one_an_hour() -> Harness {
    Harness::load(
        "limit",
        guests::RATE_LIMIT,
        serde_json::json!({ "limits": [{
            "name": "all", "key": [], "capacity": 1,
            "refill": { "amount": 1, "interval": "1h" },
        }]}),
    )
    .expect("rate-limit accepts the config")
}

const CASES: &str = r#"
cases:
  - name: the first request passes
    request: { path: /api }
    expect: { action: continue, upstream: backend }
  - name: the second is limited
    request: { path: /api, headers: { x-tenant: acme } }
    expect:
      action: respond
      status: 429
      response_headers: { retry-after: "3600", x-ratelimit-limit: "1", x-nothing: null }
      metrics:
        - { name: weft_filter_ratelimit_decisions_total, labels: { decision: limited }, value: 1 }
  - name: an hour later it passes again
    advance: 1h
    request: { path: /api }
    expect: { action: continue }
"#;

#[test]
fn yaml_cases_pass_when_the_filter_does_what_they_say() {
    let file = cases::CaseFile::from_yaml(CASES, Path::new("cases.yaml")).expect("valid cases");
    let report = cases::run(&one_an_hour(), &file);
    assert!(report.passed(), "{report}");
    assert_eq!(report.cases.len(), 3);
    assert!(
        report.to_string().ends_with("3 passed, 0 failed"),
        "{report}"
    );
}

#[test]
fn a_failing_case_reports_each_difference() {
    // Without the hour, the third request is limited: the report says what differs.
    let src = CASES.replace("    advance: 1h\n", "");
    let file = cases::CaseFile::from_yaml(&src, Path::new("cases.yaml")).expect("valid cases");
    let report = cases::run(&one_an_hour(), &file);
    assert!(!report.passed());
    assert_eq!(report.failed(), 1);
    let third = &report.cases[2];
    assert_eq!(
        third.mismatches,
        [cases::Mismatch {
            what: "action".into(),
            expected: "continue".into(),
            actual: "respond".into(),
        }]
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "FAIL  an hour later it passes again\n      action:\n      - continue\n      + respond"
        ),
        "{text}"
    );
    assert!(text.ends_with("2 passed, 1 failed"), "{text}");
}

#[test]
fn a_bad_cases_file_is_refused_naming_line_and_field() {
    let src = CASES.replace("advance: 1h", "advance: an hour");
    let error = cases::CaseFile::from_yaml(&src, Path::new("cases.yaml"))
        .expect_err("`an hour` is no duration");
    let text = error.to_string();
    assert!(text.starts_with("cases.yaml:15:"), "{text}");
    assert!(text.contains("cases[2].advance"), "{text}");
    assert!(text.contains("invalid duration \"an hour\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_mode_runs_filters_in_a_real_proxy_before_a_real_upstream() -> anyhow::Result<()>
{
    use weft_tests::harness::chain::{ChainFilter, ChainHarness};
    let limit = ChainFilter::new(
        "limit",
        guests::RATE_LIMIT,
        serde_json::json!({ "headers": true, "limits": [{
            "name": "all", "key": [], "capacity": 1, "refill": { "amount": 1, "interval": "1h" },
        }]}),
    );
    let router = ChainFilter::new(
        "router",
        guests::HEADER_ROUTER,
        serde_json::json!({ "rules": [{
            "name": "tag", "match": { "path": { "prefix": "/" } },
            "request_headers": { "set": { "x-routed": "yes" } },
        }]}),
    );
    let chain = ChainHarness::start(&[limit, router]).await?;
    let first = chain.get("/orders?page=2", &[("x-user", "alice")]).await?;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-remaining"), Some("0"));
    let second = chain.get("/orders", &[]).await?;
    assert_eq!(second.status, 429);
    let seen = chain.seen();
    assert_eq!(
        seen.len(),
        1,
        "the limited request never reached the upstream"
    );
    assert_eq!(seen[0].path, "/orders?page=2");
    assert_eq!(
        seen[0].headers.get("x-routed").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    assert_eq!(
        seen[0].headers.get("x-user").map(|v| v.as_bytes()),
        Some(&b"alice"[..])
    );
    chain.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_mode_refuses_a_bad_config_naming_the_filter() {
    use weft_tests::harness::chain::{ChainFilter, ChainHarness};
    let bad = ChainFilter::new(
        "limit",
        guests::RATE_LIMIT,
        serde_json::json!({ "limits": [{ "name": "all", "key": [], "capacity": 0,
                                         "refill": { "amount": 1, "interval": "1h" } }] }),
    );
    let error = ChainHarness::start(&[bad])
        .await
        .expect_err("capacity 0 is refused");
    let text = error.to_string();
    assert!(text.contains("limit"), "{text}");
    assert!(text.contains("capacity"), "{text}");
}

#[test]
fn body_hooks_see_and_replace_whole_bodies() {
    let harness =
        Harness::load("body", guests::BODY, serde_json::Value::Null).expect("body guest loads");
    let mut request = TestRequest::new("POST", "/upload");
    let mut body = bytes::Bytes::from_static(b"hello");
    let verdict = harness
        .on_request_body(&mut request, &mut body)
        .expect("no failure");
    assert_eq!(Decision::from(&verdict), Decision::Continue);
    assert_eq!(&body[..], b"hello!");

    let mut forbidden = bytes::Bytes::from_static(b"a forbidden word");
    let verdict = harness
        .on_request_body(&mut request, &mut forbidden)
        .expect("no failure");
    assert_eq!(Decision::from(&verdict), Decision::Respond(400));

    let mut head = weft_tests::harness::response(200);
    let mut reply = bytes::Bytes::from_static(b"quiet");
    harness
        .on_response_body(&request, &mut head, &mut reply)
        .expect("no failure");
    assert_eq!(&reply[..], b"QUIET");
}

#[test]
fn hooks_a_filter_did_not_declare_are_not_called_as_in_the_proxy() {
    // noop declares only on-request-headers; every call the runtime makes is timed, so the
    // call-duration histogram shows which hooks ran.
    let harness =
        Harness::load("noop", guests::NOOP, serde_json::Value::Null).expect("noop guest loads");
    let mut request = TestRequest::get("/");
    harness.on_request(&mut request).expect("no failure");
    let verdict = harness
        .on_response(&request, &mut weft_tests::harness::response(200))
        .expect("no failure");
    assert_eq!(Decision::from(&verdict), Decision::Continue);
    let calls = |hook: &str| {
        harness.scrape().value(
            "weft_filter_call_duration_seconds_count",
            &[("filter", "noop"), ("hook", hook)],
        )
    };
    assert_eq!(calls("on-request-headers"), Some(1.0));
    assert!(
        matches!(calls("on-response-headers"), None | Some(0.0)),
        "the undeclared response hook ran: {:?}",
        calls("on-response-headers")
    );
}

#[test]
fn yaml_cases_cover_bodies() {
    let src = r#"
cases:
  - name: the request body is rewritten and the response body upper-cased
    request: { method: POST, path: /upload, body: hello }
    response: { status: 200, body: quiet }
    expect: { action: continue, request_body: "hello!", body: QUIET }
  - name: a forbidden body is refused
    request: { method: POST, path: /upload, body: "a forbidden word" }
    expect: { action: respond, status: 400, body: forbidden body }
  - name: a wrong expectation is reported
    request: { method: POST, path: /upload, body: hi }
    expect: { request_body: "hi" }
"#;
    let harness =
        Harness::load("body", guests::BODY, serde_json::Value::Null).expect("body guest loads");
    let file = cases::CaseFile::from_yaml(src, Path::new("cases.yaml")).expect("valid cases");
    let report = cases::run(&harness, &file);
    assert_eq!(report.failed(), 1, "{report}");
    assert!(report.cases[0].mismatches.is_empty(), "{report}");
    assert!(report.cases[1].mismatches.is_empty(), "{report}");
    assert_eq!(
        report.cases[2].mismatches,
        [cases::Mismatch {
            what: "request body".into(),
            expected: "\"hi\"".into(),
            actual: "\"hi!\"".into(),
        }]
    );
}
