//! Resilience against upstreams that misbehave on purpose ([`ScriptedUpstream`]): retries and
//! their limits (replayable bodies, the budget, the statuses listed), timeouts per try and per
//! request, the circuit breaker, outlier detection and active health checks; and the retry
//! settings a config must not be allowed to have.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tokio::sync::mpsc;
use weft_tests::{
    Behaviour, CONFIG_FILE, EchoRequest, EchoService, Proto, Reply, ScriptedUpstream,
    UPSTREAM_HEADER, Upstream, echo_client, empty, get, get_with, http1_client, metric,
    one_upstream_config, post_with, proxy_config_error, request, send, start_proxy, wait_for,
};

use crate::line_of;

const RETRIES: &str = "weft_upstream_retries_total";
const RETRIES_SKIPPED: &str = "weft_upstream_retries_skipped_total";
const OVERFLOW: &str = "weft_upstream_overflow_total";
const EJECTIONS: &str = "weft_upstream_ejections_total";

/// Retries without waiting: the tests count attempts, not backoff.
const FAST_BACKOFF: &str = "backoff: {base: 1ms, max: 2ms}";

/// `upstream` as an item of an `endpoints:` list.
pub(crate) fn endpoint(upstream: &ScriptedUpstream) -> String {
    format!("\"{}\"", upstream.addr())
}

/// Requests received by all of `upstreams`.
pub(crate) fn attempts(upstreams: &[&ScriptedUpstream]) -> usize {
    upstreams.iter().map(|u| u.requests()).sum()
}

/// `GET /` through the proxy at `addr` over HTTP/1.1 with `client` (keep-alive).
async fn get_once(client: &weft_tests::HttpClient, addr: std::net::SocketAddr) -> Reply {
    send(client, request(Method::GET, addr, "/", &[], empty()))
        .await
        .expect("the proxy answers")
}

fn answered_by(reply: &Reply) -> &str {
    reply.header(UPSTREAM_HEADER).unwrap_or("<the proxy>")
}

// Retries.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_carry_every_request_past_resets_and_503s() -> anyhow::Result<()> {
    const N: usize = 40;
    for proto in Proto::ALL {
        let resets = ScriptedUpstream::start(Behaviour::ResetEveryOther).await?;
        let fails = ScriptedUpstream::start(Behaviour::FailEveryOther(503)).await?;
        let retries = format!(
            "retries: {{attempts: 2, {FAST_BACKOFF}, budget: {{ratio: 1.0, min_per_second: 1000}}}}"
        );
        let proxy = start_proxy(&one_upstream_config(
            &["upstream: app"],
            &[endpoint(&resets), endpoint(&fails)],
            &[&retries],
        ))
        .await?;
        let client = proto.client();
        for i in 0..N {
            let req = request(Method::GET, proxy.addr(), &format!("/{i}"), &[], empty());
            let reply = send(&client, req).await?;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{proto:?}: request {i} failed although the next try would succeed: {}",
                reply.text()
            );
        }
        let tries = attempts(&[&resets, &fails]);
        assert_eq!(
            resets.successes() + fails.successes(),
            N,
            "{proto:?}: each request must succeed exactly once at the upstreams"
        );
        assert!(
            resets.requests() > resets.successes() && fails.requests() > fails.successes(),
            "{proto:?}: both kinds of failure must have been met (reset: {} of {}, 503: {} of {})",
            resets.requests() - resets.successes(),
            resets.requests(),
            fails.requests() - fails.successes(),
            fails.requests()
        );
        assert!(
            tries > N && tries <= 3 * N,
            "{proto:?}: {tries} tries for {N} requests, attempts: 2"
        );
        let counted = metric(proxy.admin(), RETRIES, &[("upstream", "app")]).await?;
        assert_eq!(
            counted,
            Some((tries - N) as f64),
            "{proto:?}: {RETRIES} must count every retry"
        );
        for reason in ["reset", "status"] {
            let by_reason = metric(
                proxy.admin(),
                RETRIES,
                &[("upstream", "app"), ("reason", reason)],
            )
            .await?;
            assert!(
                by_reason.is_some_and(|n| n > 0.0),
                "{proto:?}: no retry counted for reason {reason}: {by_reason:?}"
            );
        }
    }
    Ok(())
}

/// Off by default (no header added); asked for, each try carries its number, replacing
/// whatever the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_count_header_numbers_each_try_when_asked_for() -> anyhow::Result<()> {
    let failing = ScriptedUpstream::start(Behaviour::Status(503)).await?;
    let echo = Upstream::start().await?;
    let echo_endpoint = format!("\"{}\"", echo.addr());
    let asked = format!("retries: {{attempts: 2, {FAST_BACKOFF}, attempt_count_header: true}}");
    let not_asked = format!("retries: {{attempts: 2, {FAST_BACKOFF}}}");
    // What the echo upstream saw in 4 requests, each sent with the header set to 99.
    let seen = |endpoints: Vec<String>, retries: String| async move {
        let proxy = start_proxy(&one_upstream_config(
            &["upstream: app"],
            &endpoints,
            &[&retries],
        ))
        .await?;
        let mut values = Vec::new();
        for _ in 0..4 {
            let reply = get(proxy.addr(), "/", &[("x-weft-attempt-count", "99")]).await?;
            anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.text());
            let seen = reply.seen()?;
            values.push(
                seen.header("x-weft-attempt-count")
                    .unwrap_or("none")
                    .to_owned(),
            );
        }
        anyhow::Ok(values)
    };

    let first_tries = seen(vec![echo_endpoint.clone()], asked.clone()).await?;
    assert_eq!(
        first_tries, ["1"; 4],
        "a first try is 1, never the client's 99"
    );
    let with_retries = seen(vec![endpoint(&failing), echo_endpoint.clone()], asked).await?;
    assert!(
        with_retries.iter().all(|v| v == "1" || v == "2") && with_retries.iter().any(|v| v == "2"),
        "the try after the failing endpoint's 503 is the 2nd: {with_retries:?}"
    );
    let untouched = seen(vec![endpoint(&failing), echo_endpoint], not_asked).await?;
    assert_eq!(
        untouched, ["99"; 4],
        "not asked for: the client's header passes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_replay_limit_is_not_retried() -> anyhow::Result<()> {
    let a = ScriptedUpstream::start(Behaviour::Status(503)).await?;
    let b = ScriptedUpstream::start(Behaviour::Status(503)).await?;
    let retries = format!("retries: {{attempts: 2, max_replay_body: 1KiB, {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&a), endpoint(&b)],
        &[&retries],
    ))
    .await?;

    let reply = post_with(Proto::Http1, proxy.addr(), "/", &[], vec![b'x'; 4096]).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.header(UPSTREAM_HEADER).is_some(),
        "the client must get the upstream's own 503: {:?}",
        reply.headers
    );
    assert_eq!(
        attempts(&[&a, &b]),
        1,
        "a 4 KiB body over max_replay_body 1KiB was tried more than once"
    );

    // The same request with a body within the limit is retried: the limit made the difference.
    let reply = post_with(Proto::Http1, proxy.addr(), "/", &[], vec![b'x'; 512]).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempts(&[&a, &b]), 1 + 3, "a 512 B body is retried twice");

    let skipped = metric(
        proxy.admin(),
        RETRIES_SKIPPED,
        &[("upstream", "app"), ("reason", "body")],
    )
    .await?;
    assert_eq!(skipped, Some(1.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_stops_retries_when_every_endpoint_fails() -> anyhow::Result<()> {
    const N: usize = 100;
    const RATIO: f64 = 0.1;
    const MIN_PER_SECOND: usize = 1;
    const TTL_SECONDS: usize = 10;
    let a = ScriptedUpstream::start(Behaviour::Status(503)).await?;
    let b = ScriptedUpstream::start(Behaviour::Status(503)).await?;
    let retries = format!(
        "retries: {{attempts: 3, {FAST_BACKOFF}, budget: {{ratio: {RATIO}, min_per_second: {MIN_PER_SECOND}, ttl: {TTL_SECONDS}s}}}}"
    );
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&a), endpoint(&b)],
        &[&retries],
    ))
    .await?;
    let client = http1_client();
    for _ in 0..N {
        let reply = get_once(&client, proxy.addr()).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let retried = attempts(&[&a, &b]) - N;
    // A share of the requests plus the floor for one `ttl`, and a little slack for how the
    // proxy rounds; without a budget it would be 3 × N.
    let allowed = (RATIO * N as f64).ceil() as usize + MIN_PER_SECOND * TTL_SECONDS + 5;
    assert!(
        retried >= 1,
        "the budget's floor must let some retries through"
    );
    assert!(
        retried <= allowed,
        "{retried} retries for {N} failing requests: the budget (ratio {RATIO}, min_per_second {MIN_PER_SECOND}) allows about {allowed}"
    );
    let skipped = metric(
        proxy.admin(),
        RETRIES_SKIPPED,
        &[("upstream", "app"), ("reason", "budget")],
    )
    .await?;
    assert!(
        skipped.is_some_and(|n| n >= 1.0),
        "{RETRIES_SKIPPED}{{reason=budget}} = {skipped:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_statuses_listed_are_retried() -> anyhow::Result<()> {
    const N: usize = 5;
    let a = ScriptedUpstream::start(Behaviour::Status(404)).await?;
    let b = ScriptedUpstream::start(Behaviour::Status(404)).await?;
    let endpoints = [endpoint(&a), endpoint(&b)];
    let client = http1_client();

    // The default `on` is connect failures, resets, 502, 503 and 504.
    let default_on = format!("retries: {{attempts: 2, {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &endpoints,
        &[&default_on],
    ))
    .await?;
    for _ in 0..N {
        assert_eq!(
            get_once(&client, proxy.addr()).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        attempts(&[&a, &b]),
        N,
        "a 404 was retried though not listed"
    );
    drop(proxy);

    let listed = format!("retries: {{attempts: 2, on: [404], {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &endpoints,
        &[&listed],
    ))
    .await?;
    for _ in 0..N {
        assert_eq!(
            get_once(&client, proxy.addr()).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        attempts(&[&a, &b]),
        N + 3 * N,
        "with `on: [404]` each request gets 3 tries"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unavailable_in_a_trailers_only_response_is_retried() -> anyhow::Result<()> {
    const CALLS: usize = 10;
    let unavailable = ScriptedUpstream::start(Behaviour::Grpc(14)).await?;
    let echo = EchoService::start().await?;
    let endpoints = [endpoint(&unavailable), format!("\"{}\"", echo.addr())];
    let call = |i: usize| EchoRequest {
        message: format!("call {i}"),
        count: 0,
    };

    let retried = format!("retries: {{attempts: 1, grpc_on: [unavailable], {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &endpoints,
        &[&retried],
    ))
    .await?;
    let mut client = echo_client(proxy.addr()).await?;
    for i in 0..CALLS {
        let reply = client.unary(call(i)).await;
        let reply = reply.unwrap_or_else(|status| panic!("call {i} failed: {status:?}"));
        assert_eq!(reply.into_inner().message, format!("call {i}"));
    }
    let tried = unavailable.requests();
    assert!(
        tried >= 1,
        "no call went to the unavailable endpoint first: the test proves nothing"
    );

    // Without `grpc_on` the same calls fail as often as they meet that endpoint.
    let plain = format!("retries: {{attempts: 1, {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &endpoints,
        &[&plain],
    ))
    .await?;
    let mut client = echo_client(proxy.addr()).await?;
    let mut failed = 0;
    for i in 0..CALLS {
        match client.unary(call(i)).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                failed += 1;
            }
        }
    }
    assert!(
        failed >= 1,
        "without grpc_on, unavailable must reach the client"
    );
    assert_eq!(failed, unavailable.requests() - tried);
    Ok(())
}

// Timeouts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_is_left_at_the_per_try_timeout_for_another() -> anyhow::Result<()> {
    let hang = ScriptedUpstream::start(Behaviour::Hang).await?;
    let ok = ScriptedUpstream::start(Behaviour::Ok).await?;
    let retries = format!("retries: {{attempts: 1, per_try_timeout: 200ms, {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&hang), endpoint(&ok)],
        &[&retries],
    ))
    .await?;
    let client = http1_client();
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        let started = Instant::now();
        let reply = get_once(&client, proxy.addr()).await;
        let took = started.elapsed();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(answered_by(&reply), ok.name());
        assert!(
            took < Duration::from_millis(1500),
            "took {took:?}: the hanging try was not abandoned at 200ms"
        );
        slowest = slowest.max(took);
    }
    let timed_out = hang.requests();
    assert!(timed_out >= 1, "no request tried the hanging endpoint");
    assert!(
        slowest >= Duration::from_millis(190),
        "a request that met the hanging endpoint came back in {slowest:?}, before its per-try timeout"
    );
    let counted = metric(
        proxy.admin(),
        RETRIES,
        &[("upstream", "app"), ("reason", "timeout")],
    )
    .await?;
    assert_eq!(counted, Some(timed_out as f64));
    hang.release_held();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_hanging_endpoints_give_504_after_every_try() -> anyhow::Result<()> {
    let a = ScriptedUpstream::start(Behaviour::Hang).await?;
    let b = ScriptedUpstream::start(Behaviour::Hang).await?;
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&a), endpoint(&b)],
        &["retries: {attempts: 1, per_try_timeout: 200ms, backoff: {base: 10ms, max: 20ms}}"],
    ))
    .await?;
    let started = Instant::now();
    let reply = get(proxy.addr(), "/", &[]).await?;
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "two tries of 200ms took {took:?}"
    );
    assert_eq!(
        (a.requests(), b.requests()),
        (1, 1),
        "the second try must go to the other endpoint"
    );
    a.release_held();
    b.release_held();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_bounds_all_tries_together() -> anyhow::Result<()> {
    let a = ScriptedUpstream::start(Behaviour::Hang).await?;
    let b = ScriptedUpstream::start(Behaviour::Hang).await?;
    let route_retries = format!("retries: {{attempts: 5, per_try_timeout: 200ms, {FAST_BACKOFF}}}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app", "timeout: 300ms", &route_retries],
        &[endpoint(&a), endpoint(&b)],
        &[],
    ))
    .await?;
    let started = Instant::now();
    let reply = get(proxy.addr(), "/", &[]).await?;
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    // Six tries of 200ms would take 1.2s.
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(900),
        "the route's 300ms timeout ended the request after {took:?}"
    );
    assert_eq!(
        attempts(&[&a, &b]),
        2,
        "tries at 0 and ~200ms fit in 300ms, no more"
    );
    a.release_held();
    b.release_held();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_that_started_outlives_the_timeouts() -> anyhow::Result<()> {
    const CHUNKS: usize = 60;
    let upstream = Upstream::start().await?;
    let yaml = one_upstream_config(
        &["upstream: app", "timeout: 100ms"],
        &[format!("\"{}\"", upstream.addr())],
        &["retries: {attempts: 1, per_try_timeout: 100ms}"],
    );
    let proxy = start_proxy(&yaml).await?;
    for proto in Proto::ALL {
        let started = Instant::now();
        let reply = get_with(proto, proxy.addr(), &format!("/stream/{CHUNKS}"), &[]).await?;
        let took = started.elapsed();
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        let expected: String = (0..CHUNKS).map(|i| format!("chunk {i}\n")).collect();
        assert_eq!(reply.text(), expected, "{proto:?}: the stream was cut");
        assert!(
            took >= Duration::from_millis(200),
            "{proto:?}: the stream took {took:?}, not longer than the timeout: the test proves nothing"
        );
    }
    assert_eq!(
        upstream.requests(),
        2,
        "a started stream must not be retried"
    );
    Ok(())
}

// Circuit breaking.

/// Starts `n` concurrent `GET /` to `addr` (one connection each); replies arrive on the
/// receiver as they complete.
fn send_concurrently(addr: std::net::SocketAddr, n: usize) -> mpsc::UnboundedReceiver<Reply> {
    let (tx, rx) = mpsc::unbounded_channel();
    for _ in 0..n {
        let tx = tx.clone();
        tokio::spawn(async move {
            let reply = get(addr, "/", &[]).await.expect("the proxy answers");
            let _ = tx.send(reply);
        });
    }
    rx
}

/// The next `n` replies from `replies`, within 5 s.
async fn next_replies(replies: &mut mpsc::UnboundedReceiver<Reply>, n: usize) -> Vec<Reply> {
    let mut got = Vec::new();
    while got.len() < n {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} replies within 5s", got.len()))
            .expect("the senders are alive until they reply");
        got.push(reply);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_requests_the_proxy_answers_503_at_once() -> anyhow::Result<()> {
    let upstream = ScriptedUpstream::start(Behaviour::Hang).await?;
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&upstream)],
        &[
            "circuit_breaker: {max_requests: 4}",
            "retries: {attempts: 0}",
        ],
    ))
    .await?;
    let mut replies = send_concurrently(proxy.addr(), 12);

    // The 8 over the limit are answered while the 4 admitted are still held upstream.
    for reply in next_replies(&mut replies, 8).await {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        assert!(
            reply.text().contains("max_requests"),
            "the 503 must name the limit: {:?}",
            reply.text()
        );
    }
    wait_for(
        Duration::from_secs(5),
        "4 requests held upstream",
        || async {
            match upstream.in_flight() {
                4 => Ok(()),
                n => Err(format!("{n} in flight")),
            }
        },
    )
    .await?;
    assert_eq!(upstream.requests(), 4);

    upstream.release_held();
    for reply in next_replies(&mut replies, 4).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(upstream.max_concurrent(), 4);
    let overflow = metric(
        proxy.admin(),
        OVERFLOW,
        &[("upstream", "app"), ("limit", "max_requests")],
    )
    .await?;
    assert_eq!(overflow, Some(8.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_pending_requests_the_proxy_answers_503_at_once() -> anyhow::Result<()> {
    let upstream = ScriptedUpstream::start(Behaviour::Hang).await?;
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&upstream)],
        &[
            "protocol: http1",
            "circuit_breaker: {max_connections: 2, max_pending_requests: 1}",
            "retries: {attempts: 0}",
        ],
    ))
    .await?;
    let mut replies = send_concurrently(proxy.addr(), 6);

    // Two on the two connections, one waiting for a connection, three turned away.
    for reply in next_replies(&mut replies, 3).await {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        assert!(
            reply.text().contains("max_pending_requests"),
            "the 503 must name the limit: {:?}",
            reply.text()
        );
    }
    // The turned-away answers can come back before the two admitted requests arrive.
    wait_for(
        Duration::from_secs(5),
        "2 requests held upstream",
        || async {
            match upstream.in_flight() {
                2 => Ok(()),
                n => Err(format!("{n} in flight")),
            }
        },
    )
    .await?;
    assert_eq!(upstream.requests(), 2);

    upstream.set_behaviour(Behaviour::Ok);
    upstream.release_held();
    for reply in next_replies(&mut replies, 3).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(
        upstream.requests(),
        3,
        "the pending request got a connection"
    );
    assert!(
        upstream.connections() <= 2,
        "{} connections",
        upstream.connections()
    );
    let overflow = metric(
        proxy.admin(),
        OVERFLOW,
        &[("upstream", "app"), ("limit", "max_pending_requests")],
    )
    .await?;
    assert_eq!(overflow, Some(3.0));
    Ok(())
}

// Outlier detection.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_and_comes_back_after_the_ejection_time() -> anyhow::Result<()>
{
    let bad = ScriptedUpstream::start(Behaviour::Status(500)).await?;
    let good = [
        ScriptedUpstream::start(Behaviour::Ok).await?,
        ScriptedUpstream::start(Behaviour::Ok).await?,
    ];
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&bad), endpoint(&good[0]), endpoint(&good[1])],
        &[
            "outlier_detection: {consecutive_failures: 3, base_ejection_time: 500ms, max_ejection_percent: 50}",
            "retries: {attempts: 0}",
        ],
    ))
    .await?;
    let client = http1_client();

    let mut failures = 0;
    for _ in 0..30 {
        if get_once(&client, proxy.addr()).await.status == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
            if failures == 3 {
                break;
            }
        }
    }
    assert_eq!(failures, 3, "round robin must reach the failing endpoint");
    let ejected_at = Instant::now();

    let mut sent = 0;
    while ejected_at.elapsed() < Duration::from_millis(400) && sent < 30 {
        let reply = get_once(&client, proxy.addr()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "a request reached the ejected endpoint"
        );
        sent += 1;
    }
    assert!(sent >= 5, "only {sent} requests in the ejection window");
    assert_eq!(bad.requests(), 3);

    bad.set_behaviour(Behaviour::Ok);
    wait_for(
        Duration::from_secs(5),
        "the ejected endpoint to get traffic again",
        || async {
            let reply = get_once(&client, proxy.addr()).await;
            assert_eq!(reply.status, StatusCode::OK);
            if bad.requests() > 3 {
                Ok(())
            } else {
                Err("no request yet".to_owned())
            }
        },
    )
    .await?;
    let back_after = ejected_at.elapsed();
    assert!(
        back_after >= Duration::from_millis(450),
        "back after {back_after:?}, before the 500ms ejection time"
    );
    let ejections = metric(proxy.admin(), EJECTIONS, &[("upstream", "app")]).await?;
    assert_eq!(ejections, Some(1.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_ejection_percent_is_ejected() -> anyhow::Result<()> {
    let bad = [
        ScriptedUpstream::start(Behaviour::Status(500)).await?,
        ScriptedUpstream::start(Behaviour::Status(500)).await?,
    ];
    let good = ScriptedUpstream::start(Behaviour::Ok).await?;
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&bad[0]), endpoint(&bad[1]), endpoint(&good)],
        &[
            // 34% of 3 endpoints: one.
            "outlier_detection: {consecutive_failures: 3, base_ejection_time: 30s, max_ejection_percent: 34}",
            "retries: {attempts: 0}",
        ],
    ))
    .await?;
    let client = http1_client();
    // Both failing endpoints fail 3 times in a row well within 30 requests.
    for _ in 0..30 {
        get_once(&client, proxy.addr()).await;
    }
    let before = [bad[0].requests(), bad[1].requests()];
    for _ in 0..30 {
        get_once(&client, proxy.addr()).await;
    }
    let during = [bad[0].requests() - before[0], bad[1].requests() - before[1]];
    assert!(
        during.contains(&0) && during.iter().any(|n| *n > 0),
        "exactly one failing endpoint may be out, the other must still get traffic: requests to each over 30: {during:?}"
    );
    let ejections = metric(proxy.admin(), EJECTIONS, &[("upstream", "app")]).await?;
    assert_eq!(ejections, Some(1.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_endpoint_is_ejected_all_are_used() -> anyhow::Result<()> {
    let bad = ScriptedUpstream::start(Behaviour::Status(500)).await?;
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&bad)],
        &[
            "outlier_detection: {consecutive_failures: 1, base_ejection_time: 30s, max_ejection_percent: 100}",
            "retries: {attempts: 0}",
        ],
    ))
    .await?;
    let client = http1_client();
    for i in 0..5 {
        let reply = get_once(&client, proxy.addr()).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "request {i}"
        );
        assert_eq!(answered_by(&reply), bad.name(), "request {i}");
    }
    assert_eq!(bad.requests(), 5);
    let ejections = metric(proxy.admin(), EJECTIONS, &[("upstream", "app")]).await?;
    assert!(ejections.is_some_and(|n| n >= 1.0), "{ejections:?}");
    Ok(())
}

// Active health checks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_its_health_check_gets_no_traffic_until_it_passes() -> anyhow::Result<()>
{
    let a = ScriptedUpstream::start(Behaviour::Ok).await?;
    let b = ScriptedUpstream::start(Behaviour::Ok).await?;
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&a), endpoint(&b)],
        &[
            "health_check: {path: /healthz, interval: 50ms, timeout: 40ms, unhealthy_threshold: 2, healthy_threshold: 1}",
            "retries: {attempts: 0}",
        ],
    ))
    .await?;
    let client = http1_client();
    wait_for(Duration::from_secs(5), "both endpoints in use", || async {
        get_once(&client, proxy.addr()).await;
        match (a.requests(), b.requests()) {
            (0, _) | (_, 0) => Err(format!("requests: {}, {}", a.requests(), b.requests())),
            _ => Ok(()),
        }
    })
    .await?;

    a.set_healthy(false);
    let streak = AtomicUsize::new(0);
    wait_for(
        Duration::from_secs(5),
        "10 requests in a row to b only",
        || async {
            let before = a.requests();
            assert_eq!(get_once(&client, proxy.addr()).await.status, StatusCode::OK);
            if a.requests() > before {
                streak.store(0, Ordering::SeqCst);
            } else if streak.fetch_add(1, Ordering::SeqCst) + 1 >= 10 {
                return Ok(());
            }
            Err(format!("streak {}", streak.load(Ordering::SeqCst)))
        },
    )
    .await?;
    let out_at = a.requests();
    for _ in 0..20 {
        assert_eq!(get_once(&client, proxy.addr()).await.status, StatusCode::OK);
    }
    assert_eq!(a.requests(), out_at, "the unhealthy endpoint got traffic");
    assert!(
        a.health_checks() >= 2,
        "{} health checks",
        a.health_checks()
    );

    a.set_healthy(true);
    wait_for(Duration::from_secs(5), "a to get traffic again", || async {
        get_once(&client, proxy.addr()).await;
        if a.requests() > out_at {
            Ok(())
        } else {
            Err("none yet".to_owned())
        }
    })
    .await?;
    Ok(())
}

// Config mistakes.

/// Asserts that `yaml` is refused with an error naming `weft.yaml:<line>:` for one of the
/// lines holding `at`, and containing each of `expected`.
pub(crate) fn assert_refused(yaml: &str, at: &[&str], expected: &[&str]) {
    let message = proxy_config_error(yaml);
    let lines: Vec<usize> = at.iter().map(|needle| line_of(yaml, needle)).collect();
    assert!(
        lines
            .iter()
            .any(|line| message.contains(&format!("{CONFIG_FILE}:{line}:"))),
        "the error must point at {CONFIG_FILE} line {lines:?}: {message}"
    );
    for want in expected {
        assert!(
            message.contains(want),
            "the error must mention {want:?}: {message}"
        );
    }
}

#[test]
fn more_than_ten_retries_are_refused() {
    let endpoints = ["\"127.0.0.1:9\"".to_owned()];
    let on_route = one_upstream_config(
        &["upstream: app", "retries: {attempts: 11}"],
        &endpoints,
        &[],
    );
    assert_refused(
        &on_route,
        &["attempts: 11"],
        &["routes[0].retries.attempts", "11"],
    );
    let on_upstream =
        one_upstream_config(&["upstream: app"], &endpoints, &["retries: {attempts: 11}"]);
    assert_refused(
        &on_upstream,
        &["attempts: 11"],
        &["upstreams[0].retries.attempts", "11"],
    );
}

#[test]
fn a_retry_budget_of_zero_is_refused() {
    let yaml = one_upstream_config(
        &["upstream: app"],
        &["\"127.0.0.1:9\"".to_owned()],
        &["retries: {attempts: 2, budget: {ratio: 0, min_per_second: 0}}"],
    );
    assert_refused(&yaml, &["budget:"], &["upstreams[0].retries.budget"]);
}
