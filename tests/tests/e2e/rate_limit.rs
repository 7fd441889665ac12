//! The rate-limit filter (`filters/rate-limit`): token buckets shared by every instance, quota
//! headers, descriptors, shadow mode, per-route configs sharing buckets, bounded key tables,
//! and config errors naming the field.
//!
//! Harness tests run the filter in-process on a virtual clock (exact refill arithmetic); the
//! end-to-end tests go through the proxy with real sockets (exactness under concurrency,
//! bounded memory under a flood of keys).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use weft_runtime::{LoadError, Verdict};
use weft_tests::harness::{Decision, Harness, TestRequest};
use weft_tests::{Proto, Scrape, Upstream, get, get_with, guests, proxy_start_error, start_proxy};

use crate::{filter, one_route};

const DECISIONS: &str = "weft_filter_ratelimit_decisions_total";
const KEYS: &str = "weft_token_bucket_keys";

/// A limit as JSON: `capacity`, refilled by `amount` every `interval`, keyed by `key`.
fn limit(name: &str, key: Value, capacity: u64, amount: u64, interval: &str) -> Value {
    json!({
        "name": name,
        "key": key,
        "capacity": capacity,
        "refill": { "amount": amount, "interval": interval },
    })
}

/// `limit` with extra fields (`cost`, `max_keys`).
fn limit_with(mut limit: Value, extra: Value) -> Value {
    if let (Some(limit), Some(extra)) = (limit.as_object_mut(), extra.as_object()) {
        limit.extend(extra.clone());
    }
    limit
}

fn load(config: Value) -> Harness {
    Harness::load("rl", guests::RATE_LIMIT, config).expect("the config is valid")
}

/// Runs the hook, failing the test if the filter failed.
fn call(harness: &Harness, request: &mut TestRequest) -> Verdict {
    harness.on_request(request).expect("the filter never fails")
}

/// The verdict's response, which must be a 429.
fn limited(verdict: &Verdict) -> &http::Response<bytes::Bytes> {
    match verdict {
        Verdict::Respond(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
            response
        }
        other => panic!("expected a 429, got {:?}", Decision::from(other)),
    }
}

fn header<'a>(response: &'a http::Response<bytes::Bytes>, name: &str) -> Option<&'a str> {
    response.headers().get(name)?.to_str().ok()
}

/// The quota headers the filter added for the response: `[limit, remaining, reset]`.
fn quota_added(request: &TestRequest) -> [Option<&str>; 3] {
    [
        request.added_response_header("x-ratelimit-limit"),
        request.added_response_header("x-ratelimit-remaining"),
        request.added_response_header("x-ratelimit-reset"),
    ]
}

/// The quota headers of a 429: `[retry-after, limit, remaining, reset]`.
fn quota_of_429(response: &http::Response<bytes::Bytes>) -> [Option<&str>; 4] {
    [
        header(response, "retry-after"),
        header(response, "x-ratelimit-limit"),
        header(response, "x-ratelimit-remaining"),
        header(response, "x-ratelimit-reset"),
    ]
}

fn decisions(scrape: &Scrape, limit: &str, decision: &str) -> f64 {
    scrape
        .value(DECISIONS, &[("limit", limit), ("decision", decision)])
        .unwrap_or(0.0)
}

#[test]
fn refills_over_virtual_time_with_exact_quota_headers() {
    let harness = load(json!({
        "limits": [limit("per_client", json!(["client_address"]), 3, 1, "2s")],
        "headers": true,
    }));
    let client = "10.0.0.1:4000";
    for (remaining, reset) in [("2", "2"), ("1", "4"), ("0", "6")] {
        let mut request = TestRequest::get("/").client(client);
        assert_eq!(
            Decision::from(&call(&harness, &mut request)),
            Decision::Continue
        );
        assert_eq!(
            quota_added(&request),
            [Some("3"), Some(remaining), Some(reset)],
            "limit, remaining, seconds until full"
        );
    }

    let mut request = TestRequest::get("/").client(client);
    let verdict = call(&harness, &mut request);
    let response = limited(&verdict);
    assert_eq!(
        quota_of_429(response),
        [Some("2"), Some("3"), Some("0"), Some("6")],
        "retry-after = one refill interval"
    );
    assert_eq!(
        response.body().as_ref(),
        b"rate limit exceeded: per_client\n"
    );
    assert_eq!(
        request.added_response_header("x-ratelimit-limit"),
        None,
        "a 429 carries its own headers, not added ones too"
    );

    // Whole seconds, rounded up: 0.5 s to wait, 4.5 s to full.
    harness.advance(Duration::from_millis(1500));
    let verdict = call(&harness, &mut TestRequest::get("/").client(client));
    assert_eq!(
        quota_of_429(limited(&verdict)),
        [Some("1"), Some("3"), Some("0"), Some("5")]
    );

    harness.advance(Duration::from_millis(500));
    let mut request = TestRequest::get("/").client(client);
    assert_eq!(
        Decision::from(&call(&harness, &mut request)),
        Decision::Continue
    );
    assert_eq!(quota_added(&request), [Some("3"), Some("0"), Some("6")]);

    // The key is the IP alone: another port is the same client, another IP is not.
    let verdict = call(&harness, &mut TestRequest::get("/").client("10.0.0.1:4001"));
    limited(&verdict);
    let mut other = TestRequest::get("/").client("10.0.0.2:4000");
    assert_eq!(
        Decision::from(&call(&harness, &mut other)),
        Decision::Continue
    );
    assert_eq!(quota_added(&other), [Some("3"), Some("2"), Some("2")]);

    // Long idle: full again.
    harness.advance(Duration::from_secs(3600));
    let mut request = TestRequest::get("/").client(client);
    call(&harness, &mut request);
    assert_eq!(quota_added(&request), [Some("3"), Some("2"), Some("2")]);

    let scrape = harness.scrape();
    assert_eq!(decisions(&scrape, "per_client", "allowed"), 6.0);
    assert_eq!(decisions(&scrape, "per_client", "limited"), 3.0);
}

#[test]
fn several_limits_the_most_restrictive_speaks() {
    let harness = load(json!({
        "limits": [
            limit("per_client", json!(["client_address"]), 5, 1, "1s"),
            limit("per_path", json!(["path"]), 2, 1, "1s"),
        ],
        "headers": true,
    }));
    // per_path has fewer requests left: its quota is the one advertised.
    for (remaining, reset) in [("1", "1"), ("0", "2")] {
        let mut request = TestRequest::get("/a");
        call(&harness, &mut request);
        assert_eq!(
            quota_added(&request),
            [Some("2"), Some(remaining), Some(reset)]
        );
    }
    let verdict = call(&harness, &mut TestRequest::get("/a"));
    let response = limited(&verdict);
    assert_eq!(response.body().as_ref(), b"rate limit exceeded: per_path\n");
    assert_eq!(
        quota_of_429(response),
        [Some("1"), Some("2"), Some("0"), Some("2")]
    );

    // per_client allowed the limited request and kept its token (as Envoy does): 5 - 3 - 1.
    // Both limits now have one request left; the tie goes to the longer reset (per_client).
    let mut request = TestRequest::get("/b");
    assert_eq!(
        Decision::from(&call(&harness, &mut request)),
        Decision::Continue
    );
    assert_eq!(quota_added(&request), [Some("5"), Some("1"), Some("4")]);

    let scrape = harness.scrape();
    assert_eq!(decisions(&scrape, "per_client", "allowed"), 4.0);
    assert_eq!(decisions(&scrape, "per_path", "allowed"), 3.0);
    assert_eq!(decisions(&scrape, "per_path", "limited"), 1.0);
}

#[test]
fn descriptors_key_the_buckets() {
    // Capacity 1: a second request with the same key is limited, one with another key is not.
    let cases: [(Value, TestRequest, TestRequest, TestRequest); 5] = [
        (
            json!([{ "header": "X-Tenant" }]),
            TestRequest::get("/").header("x-tenant", "acme"),
            TestRequest::get("/other").header("x-tenant", "acme"),
            TestRequest::get("/").header("x-tenant", "globex"),
        ),
        (
            json!(["path"]),
            TestRequest::get("/a?page=1"),
            TestRequest::get("/a?page=2").client("10.9.9.9:1"),
            TestRequest::get("/b?page=1"),
        ),
        (
            json!(["route"]),
            TestRequest::get("/").route("api"),
            TestRequest::get("/x").route("api"),
            TestRequest::get("/").route("web"),
        ),
        (
            json!(["method"]),
            TestRequest::get("/"),
            TestRequest::get("/x"),
            TestRequest::new("POST", "/"),
        ),
        (
            json!([{ "header": "x-tenant" }, "path"]),
            TestRequest::get("/a").header("x-tenant", "acme"),
            TestRequest::get("/a?q").header("x-tenant", "acme"),
            TestRequest::get("/b").header("x-tenant", "acme"),
        ),
    ];
    for (key, mut first, mut same, mut other) in cases {
        let harness = load(json!({ "limits": [limit("l", key.clone(), 1, 1, "1h")] }));
        assert_eq!(
            Decision::from(&call(&harness, &mut first)),
            Decision::Continue,
            "{key}"
        );
        assert_eq!(
            Decision::from(&call(&harness, &mut same)),
            Decision::Respond(429),
            "{key}: same key"
        );
        assert_eq!(
            Decision::from(&call(&harness, &mut other)),
            Decision::Continue,
            "{key}: another key"
        );
    }
}

#[test]
fn a_request_without_the_key_is_not_subject_to_the_limit() {
    let harness = load(json!({
        "limits": [limit("per_tenant", json!([{ "header": "x-tenant" }]), 1, 1, "1h")],
        "headers": true,
    }));
    for _ in 0..3 {
        let mut request = TestRequest::get("/");
        assert_eq!(
            Decision::from(&call(&harness, &mut request)),
            Decision::Continue
        );
        assert_eq!(
            quota_added(&request),
            [None, None, None],
            "no limit applied"
        );
    }
    assert_eq!(decisions(&harness.scrape(), "per_tenant", "skipped"), 3.0);
}

#[test]
fn shadow_mode_counts_but_never_blocks() {
    let harness = load(json!({
        "limits": [limit("per_client", json!(["client_address"]), 1, 1, "1h")],
        "shadow": true,
        "headers": true,
    }));
    for remaining in ["0", "0", "0"] {
        let mut request = TestRequest::get("/");
        assert_eq!(
            Decision::from(&call(&harness, &mut request)),
            Decision::Continue
        );
        assert_eq!(
            request.added_response_header("x-ratelimit-remaining"),
            Some(remaining)
        );
    }
    let scrape = harness.scrape();
    assert_eq!(decisions(&scrape, "per_client", "allowed"), 1.0);
    assert_eq!(decisions(&scrape, "per_client", "shadow_limited"), 2.0);
    assert_eq!(decisions(&scrape, "per_client", "limited"), 0.0);
}

#[test]
fn quota_headers_on_allowed_responses_are_opt_in() {
    let harness = load(json!({
        "limits": [limit("per_client", json!(["client_address"]), 1, 1, "1h")],
    }));
    let mut request = TestRequest::get("/");
    call(&harness, &mut request);
    assert_eq!(quota_added(&request), [None, None, None]);
    let verdict = call(&harness, &mut TestRequest::get("/"));
    assert_eq!(
        quota_of_429(limited(&verdict)),
        [Some("3600"), Some("1"), Some("0"), Some("3600")],
        "a 429 always tells the client when to come back"
    );
}

#[test]
fn per_route_configs_share_buckets_of_the_same_name_and_spec() {
    let per_client = limit("per_client", json!(["client_address"]), 3, 1, "1h");
    let listener = load(json!({ "limits": [per_client.clone()], "headers": true }));
    // A route's config: the same limit, plus one of its own, plus a same-named limit with
    // another spec (which therefore gets buckets of its own).
    let route = listener
        .reconfigure(
            guests::RATE_LIMIT,
            json!({
                "limits": [limit("api_burst", json!([]), 100, 1, "1h"), per_client],
                "headers": true,
            }),
        )
        .expect("the route's config is valid");
    let other_spec = listener
        .reconfigure(
            guests::RATE_LIMIT,
            json!({
                "limits": [limit("per_client", json!(["client_address"]), 4, 1, "1h")],
                "headers": true,
            }),
        )
        .expect("valid");

    call(&listener, &mut TestRequest::get("/"));
    call(&listener, &mut TestRequest::get("/"));
    let mut request = TestRequest::get("/api");
    assert_eq!(
        Decision::from(&call(&route, &mut request)),
        Decision::Continue
    );
    assert_eq!(
        request.added_response_header("x-ratelimit-remaining"),
        Some("0"),
        "the route's per_client is the listener's bucket"
    );
    let verdict = call(&listener, &mut TestRequest::get("/"));
    limited(&verdict);
    let verdict = call(&route, &mut TestRequest::get("/api"));
    assert_eq!(
        limited(&verdict).body().as_ref(),
        b"rate limit exceeded: per_client\n"
    );

    let mut request = TestRequest::get("/");
    assert_eq!(
        Decision::from(&call(&other_spec, &mut request)),
        Decision::Continue
    );
    assert_eq!(quota_added(&request), [Some("4"), Some("3"), Some("3600")]);
}

#[test]
fn key_table_is_bounded_and_sweeps_refilled_buckets() {
    let harness = load(json!({
        "limits": [limit_with(
            limit("per_tenant", json!([{ "header": "x-tenant" }]), 2, 1, "1s"),
            json!({ "max_keys": 1000 }),
        )],
    }));
    let keys = |scrape: &Scrape| {
        scrape
            .value(KEYS, &[("filter", "rl"), ("family", "per_tenant")])
            .expect("the host exports the key gauge")
    };
    for i in 0..5000 {
        let mut request = TestRequest::get("/").header("x-tenant", &format!("t{i}"));
        assert_eq!(
            Decision::from(&call(&harness, &mut request)),
            Decision::Continue,
            "on_key_overflow defaults to allow"
        );
        if i % 500 == 0 {
            assert!(keys(&harness.scrape()) <= 1000.0);
        }
    }
    let scrape = harness.scrape();
    assert_eq!(keys(&scrape), 1000.0);
    assert_eq!(decisions(&scrape, "per_tenant", "allowed"), 1000.0);
    assert_eq!(decisions(&scrape, "per_tenant", "overflow"), 4000.0);

    // Every bucket took one token: after a refill they are full, carry no information, and
    // the next take in each shard forgets them.
    harness.advance(Duration::from_secs(2));
    call(
        &harness,
        &mut TestRequest::get("/").header("x-tenant", "late"),
    );
    let after_one = keys(&harness.scrape());
    assert!(after_one < 1000.0, "one take swept its shard: {after_one}");
    for i in 0..300 {
        let mut request = TestRequest::get("/").header("x-tenant", &format!("new{i}"));
        assert_eq!(
            Decision::from(&call(&harness, &mut request)),
            Decision::Continue
        );
    }
    // 301 fresh keys visit all 16 shards (but with odds below 1e-7), so every stale bucket
    // is gone and only the fresh ones are held.
    assert_eq!(keys(&harness.scrape()), 301.0);
    assert_eq!(
        decisions(&harness.scrape(), "per_tenant", "allowed"),
        1301.0
    );
}

#[test]
fn huge_header_values_are_limited_per_value() {
    // Keys over 128 bytes are hashed: a 48 KB value still has its own bucket, the same on every
    // call, and a value differing in its last byte has another.
    let harness = load(json!({
        "limits": [limit("per_tenant", json!([{ "header": "x-tenant" }]), 2, 1, "1h")],
    }));
    let mut value = "t".repeat(48 << 10);
    let call_with = |value: &str| {
        let mut request = TestRequest::get("/").header("x-tenant", value);
        Decision::from(&call(&harness, &mut request))
    };
    assert_eq!(call_with(&value), Decision::Continue);
    assert_eq!(call_with(&value), Decision::Continue);
    assert_eq!(call_with(&value), Decision::Respond(429));
    value.pop();
    value.push('u');
    assert_eq!(call_with(&value), Decision::Continue);
    let scrape = harness.scrape();
    assert_eq!(
        scrape.value(KEYS, &[("filter", "rl"), ("family", "per_tenant")]),
        Some(2.0)
    );
    assert_eq!(decisions(&scrape, "per_tenant", "limited"), 1.0);
}

#[test]
fn key_overflow_deny_policy_answers_429() {
    let harness = load(json!({
        "limits": [limit_with(
            limit("per_tenant", json!([{ "header": "x-tenant" }]), 5, 1, "1500ms"),
            json!({ "max_keys": 2 }),
        )],
        "on_key_overflow": "deny",
    }));
    for tenant in ["a", "b"] {
        let mut request = TestRequest::get("/").header("x-tenant", tenant);
        assert_eq!(
            Decision::from(&call(&harness, &mut request)),
            Decision::Continue
        );
    }
    let verdict = call(&harness, &mut TestRequest::get("/").header("x-tenant", "c"));
    let response = limited(&verdict);
    assert_eq!(
        quota_of_429(response),
        [Some("2"), None, None, None],
        "retry after one refill interval, rounded up; no bucket, no quota"
    );
    assert_eq!(
        response.body().as_ref(),
        b"rate limit exceeded: per_tenant (too many distinct keys)\n"
    );
    // Known keys are unaffected.
    let mut request = TestRequest::get("/").header("x-tenant", "a");
    assert_eq!(
        Decision::from(&call(&harness, &mut request)),
        Decision::Continue
    );
    assert_eq!(decisions(&harness.scrape(), "per_tenant", "overflow"), 1.0);
}

#[test]
fn cost_takes_several_tokens() {
    let harness = load(json!({
        "limits": [limit_with(
            limit("weighted", json!([]), 10, 2, "1s"),
            json!({ "cost": 4 }),
        )],
        "headers": true,
    }));
    for remaining in ["6", "2"] {
        let mut request = TestRequest::get("/");
        call(&harness, &mut request);
        assert_eq!(
            request.added_response_header("x-ratelimit-remaining"),
            Some(remaining)
        );
    }
    // 2 tokens left, 4 needed: one interval brings 2 more.
    let verdict = call(&harness, &mut TestRequest::get("/"));
    assert_eq!(
        quota_of_429(limited(&verdict)),
        [Some("1"), Some("10"), Some("2"), Some("4")]
    );
}

#[test]
fn bad_configs_are_rejected_naming_the_field() {
    let good = limit("per_client", json!(["client_address"]), 10, 1, "1s");
    let cases = [
        (
            json!({ "limits": [good.clone(), limit("b", json!([]), 1, 1, "5x")] }),
            "`limits[1].refill.interval`: invalid duration \"5x\"",
        ),
        (
            json!({ "limits": [good.clone(), good.clone()] }),
            "`limits[1].name`: duplicate limit name \"per_client\"",
        ),
        (
            json!({ "limits": [limit("a", json!([]), 0, 1, "1s")] }),
            "`limits[0].capacity`: must be at least 1",
        ),
        (
            json!({ "limits": [limit("a", json!(["cookie"]), 1, 1, "1s")] }),
            "`limits[0].key[0]`: unknown descriptor \"cookie\"",
        ),
        (
            json!({ "limits": [limit("a", json!([{ "header": "x y" }]), 1, 1, "1s")] }),
            "`limits[0].key[0].header`: \"x y\" is not a valid header name",
        ),
        (
            json!({ "limits": [limit("Bad-Name", json!([]), 1, 1, "1s")] }),
            "`limits[0].name`: \"Bad-Name\" is not a valid limit name",
        ),
        (
            json!({ "limits": [limit_with(good.clone(), json!({ "cost": 11 }))] }),
            "`limits[0].cost`: 11 is more than the capacity (10)",
        ),
        (
            json!({ "limits": [{ "name": "a", "key": [], "capacity": 1 }] }),
            "`limits[0]`: missing field `refill`",
        ),
        (
            json!({ "limits": [] }),
            "`limits`: at least one limit is required",
        ),
        (json!(null), "missing field `limits`"),
        (
            json!({ "limits": [good.clone()], "on_key_overflow": "maybe" }),
            "`on_key_overflow`: unknown variant `maybe`",
        ),
    ];
    for (config, expected) in cases {
        match Harness::load("rl", guests::RATE_LIMIT, config.clone()) {
            Err(LoadError::Rejected(message)) => {
                assert!(message.contains(expected), "{config}: {message}");
            }
            Err(other) => panic!("{config}: expected a rejection, got {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

// ----- Through the proxy -----

/// The filter's failures by kind, for messages about an unexpected 500.
async fn filter_errors(admin: std::net::SocketAddr) -> anyhow::Result<String> {
    let scrape = weft_tests::scrape(admin).await?;
    let kinds = ["trap", "timeout", "invalid_action", "instantiate", "metric"];
    Ok(kinds
        .iter()
        .filter_map(|kind| {
            let n = scrape.value(
                "weft_filter_errors_total",
                &[("filter", "rl"), ("kind", kind)],
            )?;
            Some(format!("filter errors of kind {kind}: {n}"))
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// A one-route proxy config running the rate-limit filter `rl` with `config` (YAML flow).
fn proxy_yaml(upstream: std::net::SocketAddr, config: &str) -> String {
    one_route(
        upstream,
        &[filter(
            "rl",
            guests::RATE_LIMIT,
            &format!("config: {config}"),
        )],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exact_under_concurrency_across_instances() -> anyhow::Result<()> {
    const CAPACITY: usize = 100;
    const TASKS: usize = 16;
    const PER_TASK: usize = 40;
    let upstream = Upstream::start().await?;
    // No refill during the test; every connection has its own port, one IP: one bucket.
    let proxy = start_proxy(&proxy_yaml(
        upstream.addr(),
        &format!(
            "{{ limits: [{{ name: per_client, key: [client_address], capacity: {CAPACITY}, \
             refill: {{ amount: 1, interval: 1h }} }}] }}"
        ),
    ))
    .await?;
    let addr = proxy.addr();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let proto = Proto::ALL[t % 2];
        tasks.push(tokio::spawn(async move {
            let client = proto.client();
            let mut statuses = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let req =
                    weft_tests::request(http::Method::GET, addr, "/", &[], weft_tests::empty());
                statuses.push(weft_tests::send(&client, req).await?.status);
            }
            anyhow::Ok(statuses)
        }));
    }
    let (mut ok, mut too_many) = (0, 0);
    for task in tasks {
        for status in task.await?? {
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::TOO_MANY_REQUESTS => too_many += 1,
                other => anyhow::bail!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(ok, CAPACITY, "exactly the capacity is admitted");
    assert_eq!(too_many, TASKS * PER_TASK - CAPACITY);
    assert_eq!(
        upstream.requests(),
        CAPACITY,
        "the upstream saw exactly the admitted"
    );

    // Decisions are counted in the hook, before the client has its reply.
    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(decisions(&scrape, "per_client", "allowed"), CAPACITY as f64);
    assert_eq!(
        decisions(&scrape, "per_client", "limited"),
        (TASKS * PER_TASK - CAPACITY) as f64
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_headers_on_allowed_and_limited_responses() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&proxy_yaml(
        upstream.addr(),
        "{ headers: true, limits: [{ name: per_tenant, key: [{ header: x-tenant }], \
         capacity: 2, refill: { amount: 1, interval: 1h } }] }",
    ))
    .await?;
    for proto in Proto::ALL {
        let tenant = [("x-tenant", proto.version_name())];
        for (remaining, reset) in [("1", "3600"), ("0", "7200")] {
            let reply = get_with(proto, proxy.addr(), "/", &tenant).await?;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
            let quota = [
                reply.header("x-ratelimit-limit"),
                reply.header("x-ratelimit-remaining"),
                reply.header("x-ratelimit-reset"),
            ];
            assert_eq!(
                quota,
                [Some("2"), Some(remaining), Some(reset)],
                "{proto:?}"
            );
        }
        let reply = get_with(proto, proxy.addr(), "/", &tenant).await?;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{proto:?}");
        let quota = [
            reply.header("retry-after"),
            reply.header("x-ratelimit-limit"),
            reply.header("x-ratelimit-remaining"),
            reply.header("x-ratelimit-reset"),
        ];
        assert_eq!(
            quota,
            [Some("3600"), Some("2"), Some("0"), Some("7200")],
            "{proto:?}"
        );
        assert_eq!(reply.text(), "rate limit exceeded: per_tenant\n");
    }
    // Without the header the limit does not apply.
    let reply = get(proxy.addr(), "/", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-ratelimit-limit"), None);
    assert_eq!(upstream.requests(), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_flood_stays_within_max_keys() -> anyhow::Result<()> {
    const TENANTS: usize = 5000;
    const MAX_KEYS: usize = 1000;
    const TASKS: usize = 16;
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&proxy_yaml(
        upstream.addr(),
        &format!(
            "{{ limits: [{{ name: per_tenant, key: [{{ header: x-tenant }}], capacity: 5, \
             refill: {{ amount: 1, interval: 1h }}, max_keys: {MAX_KEYS} }}] }}"
        ),
    ))
    .await?;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    let keys_held = move || async move {
        let scrape = weft_tests::scrape(admin).await?;
        anyhow::Ok(
            scrape
                .value(KEYS, &[("filter", "rl"), ("family", "per_tenant")])
                .unwrap_or(0.0),
        )
    };

    // Scrape all along the flood: the gauge must never pass max_keys.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let done = done.clone();
        async move {
            let mut highest: f64 = 0.0;
            let mut scrapes = 0;
            while !done.load(Ordering::Relaxed) {
                highest = highest.max(keys_held().await?);
                scrapes += 1;
            }
            anyhow::Ok((highest, scrapes))
        }
    });
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let proto = Proto::ALL[t % 2];
        tasks.push(tokio::spawn(async move {
            let client = proto.client();
            for i in (t..TENANTS).step_by(TASKS) {
                let tenant = format!("tenant-{i}");
                let req = weft_tests::request(
                    http::Method::GET,
                    addr,
                    "/",
                    &[("x-tenant", &tenant)],
                    weft_tests::empty(),
                );
                let reply = weft_tests::send(&client, req).await?;
                if reply.status != StatusCode::OK {
                    anyhow::bail!(
                        "{tenant}: overflow is allowed by default, got {} {:?}; {}",
                        reply.status,
                        reply.text(),
                        filter_errors(admin).await?
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    done.store(true, Ordering::Relaxed);
    let (highest, scrapes) = watcher.await??;
    assert!(scrapes > 1, "the watcher scraped during the flood");
    assert!(highest <= MAX_KEYS as f64, "keys held peaked at {highest}");
    assert_eq!(keys_held().await?, MAX_KEYS as f64);

    let scrape = weft_tests::scrape(admin).await?;
    assert_eq!(decisions(&scrape, "per_tenant", "allowed"), MAX_KEYS as f64);
    assert_eq!(
        decisions(&scrape, "per_tenant", "overflow"),
        (TENANTS - MAX_KEYS) as f64
    );
    assert_eq!(upstream.requests(), TENANTS);
    Ok(())
}

/// Set in the child process that runs [`huge_keys_cost_the_proxy_bounded_memory`] alone.
const MEMORY_CHILD: &str = "WEFT_RATE_LIMIT_MEMORY_CHILD";

/// The resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm: size resident ...");
    pages * rustix::param::page_size() as u64
}

/// A client sending 2,000 distinct 48 KB `x-tenant` values makes the proxy hold 2,000 keys;
/// without a bound on key length they held ~98 MB (48 KB each). Keys over 128 bytes are now
/// hashed, so the proxy's memory grows by far less. Measured on the process's resident
/// memory, hence in a child process of this test binary that runs only this test (other tests
/// on other threads would move the number).
#[test]
fn huge_keys_cost_the_proxy_bounded_memory() {
    if weft_tests::ran_alone_in_child(
        "rate_limit::huge_keys_cost_the_proxy_bounded_memory",
        &[(MEMORY_CHILD, "1")],
    ) {
        return;
    }
    const WARM: usize = 50;
    const KEYS_SENT: usize = 2000;
    const VALUE_BYTES: usize = 48 << 10;
    /// Generous: the keys themselves are ~2,000 × 256 B = 0.5 MB; unbounded they were 98 MB.
    const MAX_GROWTH: u64 = 32 << 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(async {
            let upstream = Upstream::start().await?;
            let proxy = start_proxy(&proxy_yaml(
                upstream.addr(),
                "{ limits: [{ name: per_tenant, key: [{ header: x-tenant }], capacity: 5, \
                 refill: { amount: 1, interval: 1h } }] }",
            ))
            .await?;
            let client = Proto::Http1.client();
            let send = |i: usize| {
                let mut value = format!("{i:08}-");
                value.extend(std::iter::repeat_n('k', VALUE_BYTES - value.len()));
                let request = weft_tests::request(
                    http::Method::GET,
                    proxy.addr(),
                    "/",
                    &[("x-tenant", &value)],
                    weft_tests::empty(),
                );
                weft_tests::send(&client, request)
            };
            // Warm up: instances, buffers and the allocator reach their steady size.
            for i in 0..WARM {
                let reply = send(i).await?;
                anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.text());
            }
            let before = resident_bytes();
            for i in WARM..WARM + KEYS_SENT {
                let reply = send(i).await?;
                anyhow::ensure!(
                    reply.status == StatusCode::OK,
                    "{i}: {} {}; {}",
                    reply.status,
                    reply.text(),
                    filter_errors(proxy.admin()).await?
                );
            }
            let grown = resident_bytes().saturating_sub(before);
            let scrape = weft_tests::scrape(proxy.admin()).await?;
            let held = scrape.value(KEYS, &[("filter", "rl"), ("family", "per_tenant")]);
            assert_eq!(
                held,
                Some((WARM + KEYS_SENT) as f64),
                "every distinct value is its own key"
            );
            assert_eq!(
                decisions(&scrape, "per_tenant", "allowed"),
                (WARM + KEYS_SENT) as f64
            );
            assert!(
                grown <= MAX_GROWTH,
                "{KEYS_SENT} keys of {VALUE_BYTES} bytes grew the resident memory by {} MB \
                 (bound: {} MB)",
                grown >> 20,
                MAX_GROWTH >> 20
            );
            eprintln!(
                "{KEYS_SENT} keys of {VALUE_BYTES} bytes: resident memory grew by {} KB",
                grown >> 10
            );
            anyhow::Ok(())
        })
        .expect("the measurement runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_override_shares_the_listeners_buckets() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let per_client = "{ name: per_client, key: [client_address], capacity: 2, \
                      refill: { amount: 1, interval: 1h } }";
    let yaml = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters:
      - {{ name: rl, module: {module:?}, config: {{ headers: true, limits: [{per_client}] }} }}
    routes:
      - name: api
        match: {{ path: {{ prefix: /api }} }}
        upstream: app
        filters:
          rl: {{ config: {{ headers: true, limits: [{per_client}, {{ name: per_path, key: [path], capacity: 10, refill: {{ amount: 1, interval: 1h }} }}] }} }}
      - name: web
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        module = guests::RATE_LIMIT,
        upstream = upstream.addr()
    );
    let proxy = start_proxy(&yaml).await?;
    let reply = get(proxy.addr(), "/", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = get(proxy.addr(), "/api/x", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("x-ratelimit-remaining"),
        Some("0"),
        "shared bucket"
    );
    for path in ["/", "/api/y"] {
        let reply = get(proxy.addr(), path, &[]).await?;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(reply.text(), "rate limit exceeded: per_client\n", "{path}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_stops_startup_naming_the_field() {
    let yaml = proxy_yaml(
        "127.0.0.1:9".parse().expect("address"),
        "{ limits: [{ name: per_client, key: [client_address], capacity: 1, \
         refill: { amount: 1, interval: soon } }] }",
    );
    let message = proxy_start_error(&yaml).await;
    assert!(message.contains("rl"), "names the filter: {message}");
    assert!(
        message.contains("`limits[0].refill.interval`: invalid duration \"soon\""),
        "names the field: {message}"
    );
}
