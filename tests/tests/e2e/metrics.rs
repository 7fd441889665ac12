//! The admin endpoint: `/ready`, and `/metrics` counting requests, filter calls, filter errors
//! and the filters' own metrics.

use std::time::{Duration, Instant};

use http::StatusCode;
use weft_tests::{Scrape, Upstream, get, guests, start_proxy};

use crate::one_route;

/// Scrapes until `check` passes, or fails with its last complaint after a few seconds. Metrics
/// may be recorded just after the client has its response (when the body completes), so one
/// scrape right after the last reply can be early.
async fn scrape_until(
    admin: std::net::SocketAddr,
    check: impl Fn(&Scrape) -> anyhow::Result<()>,
) -> anyhow::Result<Scrape> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let scrape = weft_tests::scrape(admin).await?;
        match check(&scrape) {
            Ok(()) => return Ok(scrape),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("/metrics was:\n{}", scrape.text)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_listening() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&one_route(upstream.addr(), &[])).await?;
    let reply = get(proxy.admin(), "/ready", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_filter_calls_and_errors() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    // Names unique to this test, so the counts are exact even if metrics were process-wide.
    let yaml = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: metered
    address: 127.0.0.1:0
    direction: inbound
    filters:
      - {{ name: counted, module: {metrics:?} }}
      - {{ name: crashy, module: {trap:?}, failure_policy: fail_open }}
      - {{ name: loopy, module: {spin:?}, failure_policy: fail_open, time_budget: 100ms }}
    routes:
      - name: home
        match: {{ path: {{ prefix: /home }} }}
        upstream: backend
        filters: {{ crashy: {{ disabled: true }}, loopy: {{ disabled: true }} }}
      - name: trap
        match: {{ path: {{ prefix: /trap }} }}
        upstream: backend
        filters: {{ loopy: {{ disabled: true }} }}
      - name: loop
        match: {{ path: {{ prefix: /loop }} }}
        upstream: backend
        filters: {{ crashy: {{ disabled: true }} }}
upstreams:
  - name: backend
    endpoints: ["{upstream}"]
"#,
        metrics = guests::METRICS,
        trap = guests::TRAP,
        spin = guests::SPIN,
        upstream = upstream.addr()
    );
    let proxy = start_proxy(&yaml).await?;
    let addr = proxy.listener("metered");

    const HOME: usize = 3;
    for i in 0..HOME {
        let reply = get(addr, &format!("/home/{i}"), &[]).await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    for path in ["/trap", "/loop"] {
        let reply = get(addr, path, &[]).await?;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{path} (fail_open): {}",
            reply.text()
        );
    }
    let reply = get(addr, "/unrouted", &[]).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let routed = HOME + 2;

    let requests = |route: &'static str, upstream: &'static str, status: &'static str| {
        [
            ("listener", "metered"),
            ("route", route),
            ("upstream", upstream),
            ("status", status),
        ]
    };
    scrape_until(proxy.admin(), |m| {
        let count = |route, upstream, status| {
            m.require("weft_requests_total", &requests(route, upstream, status))
        };
        anyhow::ensure!(
            count("home", "backend", "200")? == HOME as f64,
            "home requests"
        );
        anyhow::ensure!(count("trap", "backend", "200")? == 1.0, "trap requests");
        anyhow::ensure!(count("loop", "backend", "200")? == 1.0, "loop requests");
        anyhow::ensure!(count("none", "none", "404")? == 1.0, "unrouted requests");

        let durations = m.require(
            "weft_request_duration_seconds_count",
            &[("listener", "metered"), ("route", "home")],
        )?;
        anyhow::ensure!(
            durations == HOME as f64,
            "request durations of home: {durations}"
        );

        for filter in ["counted", "crashy", "loopy"] {
            let calls = m.require(
                "weft_filter_call_duration_seconds_count",
                &[("filter", filter)],
            )?;
            anyhow::ensure!(calls >= 1.0, "no timed call of filter {filter}");
        }
        let counted = m.require(
            "weft_filter_call_duration_seconds_count",
            &[("filter", "counted")],
        )?;
        anyhow::ensure!(
            counted >= routed as f64,
            "calls of `counted`: {counted} < {routed}"
        );

        // At least: whether filters run on a request no route matched is not specified.
        let traps = m.require(
            "weft_filter_errors_total",
            &[("filter", "crashy"), ("kind", "trap")],
        )?;
        anyhow::ensure!(traps >= 1.0, "trap errors of crashy: {traps}");
        let timeouts = m.require(
            "weft_filter_errors_total",
            &[("filter", "loopy"), ("kind", "timeout")],
        )?;
        anyhow::ensure!(timeouts == 1.0, "timeout errors of loopy: {timeouts}");

        // The guest's own metrics, prefixed and labelled with the filter's name.
        let seen = m.require(
            "weft_filter_requests_seen_total",
            &[("filter", "counted"), ("method", "GET")],
        )?;
        anyhow::ensure!(
            seen >= routed as f64,
            "requests_seen of counted: {seen} < {routed}"
        );
        m.require("weft_filter_last_path_len", &[("filter", "counted")])?;
        let observed = m.require("weft_filter_path_len_count", &[("filter", "counted")])?;
        anyhow::ensure!(
            observed >= routed as f64,
            "path_len observations: {observed}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}
