//! The ext-authz filter through the proxy, against a real HTTP authorization service: allow
//! (with the service's headers forwarded upstream), deny with the service's status, body and
//! headers, the service down or slow with fail-closed and fail-open, and a thousand requests
//! waiting on it while other routes keep answering on one worker.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use weft_tests::{AuthService, SingleThreadProxy, Upstream, closed_addr, get, guests, start_proxy};

/// Two routes to `app`: `/guarded` behind ext-authz (config `config`, a YAML flow mapping's
/// inside) asking the upstream `authz` at `authz`, and `/open` without filters.
fn config(app: SocketAddr, authz: SocketAddr, config: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters:
      - name: ext-authz
        module: {module:?}
        config: {{ upstream: authz, {config} }}
    routes:
      - name: open
        match: {{ path: {{ prefix: /open }} }}
        upstream: app
        filters: {{ ext-authz: {{ disabled: true }} }}
      - name: guarded
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{app}"]
  - name: authz
    endpoints: ["{authz}"]
"#,
        module = guests::EXT_AUTHZ,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_allows_and_denies_and_its_headers_go_where_configured() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let authz = AuthService::start().await?;
    let proxy = start_proxy(&config(
        app.addr(),
        authz.addr(),
        "path_prefix: /check, allowed_headers: [authorization, x-tenant], \
         upstream_headers_from_auth: [x-user-id, x-auth-*]",
    ))
    .await?;

    let reply = get(
        proxy.addr(),
        "/orders/7?full=1",
        &[
            ("authorization", "Bearer good"),
            ("x-tenant", "acme"),
            ("x-private", "s"),
        ],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = reply.seen()?;
    assert_eq!(
        seen.header("x-user-id"),
        Some("alice"),
        "listed header forwarded"
    );
    assert_eq!(
        seen.header("x-auth-tier"),
        Some("gold"),
        "prefix-matched header forwarded"
    );
    assert_eq!(
        seen.header("x-other"),
        None,
        "unlisted header not forwarded"
    );
    let checks = authz.checks();
    assert_eq!(checks.len(), 1);
    let check = &checks[0];
    assert_eq!(check.method, "GET");
    assert_eq!(
        check.path, "/check/orders/7?full=1",
        "path_prefix + the request's path"
    );
    assert_eq!(check.headers["authorization"], "Bearer good");
    assert_eq!(check.headers["x-tenant"], "acme");
    assert!(
        check.headers.get("x-private").is_none(),
        "headers not in allowed_headers stay with the request"
    );

    let reply = get(
        proxy.addr(),
        "/orders/7",
        &[("authorization", "Bearer bad")],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.text(), "denied by policy\n", "the service's body");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"weft\""),
        "the service's headers reach the client on a denial"
    );
    assert_eq!(
        app.requests(),
        1,
        "a denied request never reaches the upstream"
    );

    let reply = get(proxy.addr(), "/open/x", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "routes without the filter");
    assert_eq!(authz.checks().len(), 2, "and no check for them");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_down_denies_when_fail_closed_and_passes_marked_when_fail_open()
-> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let down = closed_addr();
    let closed = start_proxy(&config(app.addr(), down, "status_on_error: 503")).await?;
    let reply = get(closed.addr(), "/x", &[("authorization", "Bearer good")]).await?;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert_eq!(app.requests(), 0);

    let open = start_proxy(&config(app.addr(), down, "failure_mode_allow: true")).await?;
    let reply = get(open.addr(), "/x", &[("authorization", "Bearer good")]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.seen()?.header("x-ext-authz-failure-mode-allowed"),
        Some("true"),
        "the upstream can tell the check failed open"
    );
    let metrics = weft_tests::scrape(open.admin()).await?;
    assert_eq!(
        metrics.value(
            "weft_filter_outbound_calls_total",
            &[("filter", "ext-authz"), ("result", "unavailable")]
        ),
        Some(1.0),
        "the failed call is counted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_slower_than_the_timeout_is_a_failure_within_the_timeout() -> anyhow::Result<()> {
    let app = Upstream::start().await?;
    let authz = AuthService::start().await?;
    let closed = start_proxy(&config(app.addr(), authz.addr(), "timeout: 100ms")).await?;
    let started = Instant::now();
    let reply = get(closed.addr(), "/x", &[("authorization", "Bearer slow")]).await?;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert!(
        took < Duration::from_millis(1500),
        "answered at the call's timeout, not the service's 2 s: {took:?}"
    );

    let open = start_proxy(&config(
        app.addr(),
        authz.addr(),
        "timeout: 100ms, failure_mode_allow: true",
    ))
    .await?;
    let reply = get(open.addr(), "/x", &[("authorization", "Bearer slow")]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let metrics = weft_tests::scrape(open.admin()).await?;
    assert_eq!(
        metrics.value(
            "weft_filter_outbound_calls_total",
            &[("filter", "ext-authz"), ("result", "timeout")]
        ),
        Some(1.0)
    );
    Ok(())
}

/// A thousand requests wait on the authorization service, holding neither the worker nor an
/// instance: the proxy's one worker keeps answering other routes meanwhile, and every held
/// request completes once the service answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_waiting_on_the_service_do_not_stall_one_worker() -> anyhow::Result<()>
{
    const WAITING: usize = 1000;
    let app = Upstream::start().await?;
    let authz = AuthService::start().await?;
    let mut yaml = config(app.addr(), authz.addr(), "timeout: 30s");
    // A thousand connections opened at once to one listener in this process: a SYN the
    // kernel drops while the service's accept queue is full is sent again after a second,
    // which the default 1 s connect timeout would count as the service being down.
    yaml.push_str("    connect_timeout: 20s\n");
    let proxy = tokio::task::spawn_blocking(move || SingleThreadProxy::start(&yaml)).await??;
    let addr = proxy.addr();

    let mut held = tokio::task::JoinSet::new();
    for _ in 0..WAITING {
        held.spawn(async move { get(addr, "/guarded", &[("authorization", "Bearer hold")]).await });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while authz.waiting() < WAITING {
        if Instant::now() > deadline {
            let metrics = weft_tests::scrape(proxy.admin()).await?;
            let related: Vec<&str> = metrics
                .text
                .lines()
                .filter(|l| {
                    !l.starts_with('#')
                        && !l.contains("_bucket")
                        && !l.ends_with(" 0")
                        && !l.ends_with(" 0.0")
                })
                .collect();
            panic!(
                "only {} of {WAITING} checks reached the service; the proxy's metrics:\n{}",
                authz.waiting(),
                related.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The worker is free: the open route answers, one request after another, as it would
    // without the thousand waiting.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(5), get(addr, "/open/x", &[]))
            .await
            .map_err(|_| anyhow::anyhow!("the open route did not answer while checks waited"))??;
        assert_eq!(reply.status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("open route while {WAITING} checks wait: slowest of 20 took {slowest:?}");
    assert_eq!(authz.waiting(), WAITING, "the held checks are still held");

    authz.release();
    let mut ok = 0;
    while let Some(reply) = held.join_next().await {
        if reply??.status == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(
        ok, WAITING,
        "every held request was allowed once the service answered"
    );
    Ok(())
}
