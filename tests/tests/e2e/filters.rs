//! Filters in the request path: header edits both ways, local replies, config, per-route
//! overrides, body hooks, chain order, and what happens when a filter fails.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::StatusCode;
use weft_tests::{Proto, Reply, Upstream, get, get_with, guests, post_with, start_proxy};

use crate::{filter, one_route};

/// Checks the 500 a failed filter under `fail_closed` produces.
fn assert_filter_failure(reply: &Reply, filter: &str) {
    let body = reply.text();
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a failing fail_closed filter must give 500; body: {body:?}"
    );
    let expected = format!("weft: filter \"{filter}\" failed");
    assert!(
        body.starts_with(&expected),
        "body must start with {expected:?}: {body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_filter_edits_request_and_response_headers() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    for isolation in ["pooled", "per_request"] {
        let filters = [filter(
            "hdr",
            guests::HEADERS,
            &format!("isolation: {isolation}"),
        )];
        let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
        for proto in Proto::ALL {
            let case = format!("{proto:?}, isolation {isolation}");
            let headers = [("x-weft-remove", "1"), ("x-weft-multi", "a")];
            let reply = get_with(proto, proxy.addr(), "/api/x?y=1", &headers).await?;
            assert_eq!(reply.status, StatusCode::OK, "{case}: {}", reply.text());

            let seen = reply.seen().context(case.clone())?;
            assert_eq!(
                seen.header("x-weft-added"),
                Some("1"),
                "{case}: set by the filter"
            );
            assert!(
                !seen.has_header("x-weft-remove"),
                "{case}: removed by the filter"
            );
            assert_eq!(
                seen.header_values("x-weft-multi"),
                ["a", "b"],
                "{case}: appended by the filter after the client's value"
            );
            assert_eq!(
                seen.path, "/api/x?y=1",
                "{case}: path untouched without x-weft-rewrite"
            );

            let expected_response_headers = [
                ("x-weft-response", "1"),
                ("x-weft-saw-path", "/api/x?y=1"),
                ("x-weft-readonly", "ok"),
                ("x-weft-route", "app"),
                ("x-weft-listener", "inbound"),
                ("x-weft-direction", "inbound"),
                ("x-weft-client", "yes"),
            ];
            for (name, value) in expected_response_headers {
                assert_eq!(
                    reply.header(name),
                    Some(value),
                    "{case}: response header {name}; all: {:?}",
                    reply.headers
                );
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_can_rewrite_the_path() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let filters = [filter("hdr", guests::HEADERS, "")];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    for proto in Proto::ALL {
        let reply = get_with(
            proto,
            proxy.addr(),
            "/original",
            &[("x-weft-rewrite", "/rewritten?q=1")],
        )
        .await?;
        let seen = reply.seen()?;
        assert_eq!(
            seen.path, "/rewritten?q=1",
            "{proto:?}: the upstream must get the new path"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_filter_example_rejects_and_marks() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let filters = [filter("authn", guests::HEADER_FILTER, "")];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, proxy.addr(), "/", &[]).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{proto:?}");
        assert_eq!(
            reply.text(),
            "missing required header: x-user\n",
            "{proto:?}"
        );

        let reply = get_with(proto, proxy.addr(), "/", &[("x-user", "ada")]).await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
        assert_eq!(reply.header("x-filtered-by"), Some("weft"), "{proto:?}");
    }
    assert_eq!(
        upstream.requests(),
        2,
        "rejected requests must not reach the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reply_stops_the_chain() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    // If the chain went on after the teapot's reply, the trap filter would turn it into a 500.
    let filters = [
        filter(
            "teapot",
            guests::CONFIG_ECHO,
            r#"config: { greeting: "short and stout", status: 418 }"#,
        ),
        filter("boom", guests::TRAP, ""),
    ];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, proxy.addr(), "/", &[]).await?;
        assert_eq!(
            reply.status,
            StatusCode::IM_A_TEAPOT,
            "{proto:?}: {}",
            reply.text()
        );
        assert_eq!(reply.text(), "short and stout", "{proto:?}");
    }
    assert_eq!(
        upstream.requests(),
        0,
        "a local reply must not reach the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_reads_its_config() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let filters = [filter(
        "greet",
        guests::CONFIG_ECHO,
        "config: { greeting: hello }",
    )];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    let reply = get(proxy.addr(), "/", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header("x-greeting"),
        Some("hello"),
        "{:?}",
        reply.headers
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_disable_or_reconfigure_a_filter() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters:
      - name: greet
        module: {module:?}
        config: {{ greeting: hello }}
    routes:
      - name: plain
        match: {{ path: {{ prefix: /plain }} }}
        upstream: app
        filters: {{ greet: {{ disabled: true }} }}
      - name: custom
        match: {{ path: {{ prefix: /custom }} }}
        upstream: app
        filters: {{ greet: {{ config: {{ greeting: bonjour }} }} }}
      - name: teapot
        match: {{ path: {{ prefix: /teapot }} }}
        upstream: app
        filters: {{ greet: {{ config: {{ greeting: "short and stout", status: 418 }} }} }}
      - name: default
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        module = guests::CONFIG_ECHO,
        upstream = upstream.addr()
    );
    let proxy = start_proxy(&yaml).await?;

    let reply = get(proxy.addr(), "/plain", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header("x-greeting"),
        None,
        "the filter is disabled on /plain"
    );

    let reply = get(proxy.addr(), "/custom", &[]).await?;
    assert_eq!(
        reply.header("x-greeting"),
        Some("bonjour"),
        "/custom overrides the config"
    );

    let reply = get(proxy.addr(), "/teapot", &[]).await?;
    assert_eq!(
        reply.status,
        StatusCode::IM_A_TEAPOT,
        "/teapot's config replies locally"
    );
    assert_eq!(reply.text(), "short and stout");

    let reply = get(proxy.addr(), "/elsewhere", &[]).await?;
    assert_eq!(
        reply.header("x-greeting"),
        Some("hello"),
        "other routes keep the listener's config"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_hooks_rewrite_and_reject_bodies() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let filters = [filter("shout", guests::BODY, "")];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    for proto in Proto::ALL {
        // The upstream echoes what it got: the filter's `!`, then the filter upper-cases it.
        let reply = post_with(proto, proxy.addr(), "/echo", &[], "hello").await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        assert_eq!(reply.text(), "HELLO!", "{proto:?}");
        if let Some(length) = reply.header("content-length") {
            assert_eq!(
                length, "6",
                "{proto:?}: content-length must match the rewritten body"
            );
        }

        let before = upstream.requests();
        let reply = post_with(proto, proxy.addr(), "/echo", &[], "this is forbidden").await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{proto:?}");
        assert_eq!(reply.text(), "forbidden body", "{proto:?}");
        assert_eq!(
            upstream.requests(),
            before,
            "{proto:?}: a rejected body must not go upstream"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_in_order_and_responses_in_reverse() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    // `need` only lets requests through that already carry `x-weft-added` (set by `hdr`), and
    // sets `x-weft-response: from-need` on responses, which `hdr` overwrites with `1`.
    let hdr = filter("hdr", guests::HEADERS, "");
    let need = filter(
        "need",
        guests::HEADER_FILTER,
        "config: { required_header: x-weft-added, \
         response_header: { name: x-weft-response, value: from-need } }",
    );
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters: [{hdr}, {need}]
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
  - name: reversed
    address: 127.0.0.1:0
    direction: inbound
    filters: [{need}, {hdr}]
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        upstream = upstream.addr()
    );
    let proxy = start_proxy(&yaml).await?;

    let reply = get(proxy.addr(), "/", &[]).await?;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "`hdr` runs first, so `need` sees x-weft-added: {}",
        reply.text()
    );
    assert_eq!(
        reply.header_values("x-weft-response"),
        ["1"],
        "response hooks run in reverse: `need` sets from-need, then `hdr` overwrites it"
    );

    let reply = get(proxy.listener("reversed"), "/", &[]).await?;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "`need` runs before `hdr` added the header"
    );
    assert_eq!(reply.text(), "missing required header: x-weft-added\n");
    assert_eq!(upstream.requests(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_filter_fail_open_lets_requests_through() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let filters = [filter("boom", guests::TRAP, "failure_policy: fail_open")];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    for proto in Proto::ALL {
        for attempt in 0..2 {
            let reply = get_with(proto, proxy.addr(), "/", &[]).await?;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{proto:?} attempt {attempt}: fail_open must proceed as if the filter were absent: {}",
                reply.text()
            );
        }
    }
    assert_eq!(upstream.requests(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_filter_fail_closed_gives_500_and_proxy_keeps_serving() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters:
      - {{ name: boom, module: {module:?}, failure_policy: fail_closed }}
    routes:
      - name: healthy
        match: {{ path: {{ prefix: /healthy }} }}
        upstream: app
        filters: {{ boom: {{ disabled: true }} }}
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        module = guests::TRAP,
        upstream = upstream.addr()
    );
    let proxy = start_proxy(&yaml).await?;
    for proto in Proto::ALL {
        // Twice: the trapped instance must be replaced, not reused or left broken.
        for attempt in 0..2 {
            let reply = get_with(proto, proxy.addr(), "/", &[])
                .await
                .with_context(|| format!("{proto:?} attempt {attempt}"))?;
            assert_filter_failure(&reply, "boom");
        }
        let reply = get_with(proto, proxy.addr(), "/healthy", &[]).await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
    }
    assert_eq!(
        upstream.requests(),
        2,
        "only /healthy requests reach the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_filter_is_stopped_while_others_are_served() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    // Long enough that normal requests get through while it spins even on a loaded machine
    // (each is a new connection through the same two worker threads).
    let filters = [filter("spin", guests::SPIN, "time_budget: 2s")];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    let addr = proxy.addr();

    let started = Instant::now();
    let runaway = tokio::spawn(async move { get(addr, "/loop", &[]).await });

    // Normal requests through the same listener and filter while the runaway one spins.
    let mut served_meanwhile = 0;
    let mut served = 0;
    while served < 50 && !(runaway.is_finished() && served > 0) {
        let reply = get(addr, &format!("/normal/{served}"), &[]).await?;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {served}: {}",
            reply.text()
        );
        assert_eq!(
            reply.seen()?.header("x-spin"),
            Some("passed"),
            "request {served}"
        );
        served += 1;
        if !runaway.is_finished() {
            served_meanwhile += 1;
        }
    }
    let reply = runaway.await??;
    let elapsed = started.elapsed();
    assert_filter_failure(&reply, "spin");
    // Generous: the budget is 2s; this only proves the loop was stopped.
    assert!(
        elapsed < Duration::from_secs(15),
        "the runaway request took {elapsed:?}"
    );
    assert!(
        served_meanwhile >= 3,
        "only {served_meanwhile} of {served} normal requests completed while the runaway \
         filter spun: one looping request must not stall the listener"
    );

    // The listener is still healthy afterwards.
    let reply = get(addr, "/after", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_actions_follow_the_failure_policy() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters: [ {{ name: bad, module: {module:?}, failure_policy: fail_closed }} ]
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
  - name: lenient
    address: 127.0.0.1:0
    direction: inbound
    filters: [ {{ name: bad, module: {module:?}, failure_policy: fail_open }} ]
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        module = guests::BAD_ACTION,
        upstream = upstream.addr()
    );
    let proxy = start_proxy(&yaml).await?;
    for path in ["/bad-status", "/bad-header"] {
        let reply = get(proxy.addr(), path, &[]).await?;
        assert_filter_failure(&reply, "bad");

        let reply = get(proxy.listener("lenient"), path, &[]).await?;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{path} under fail_open must reach the upstream: {}",
            reply.text()
        );
        assert_eq!(reply.seen()?.path, path);
    }
    let reply = get(proxy.addr(), "/fine", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    Ok(())
}
