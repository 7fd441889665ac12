//! Tests that measure throughput, in a test binary of their own: cargo runs test binaries one
//! after another, so nothing else in the suite competes for the CPU while these measure (the
//! e2e binary runs its tests in parallel). Keep this binary small: each one links wasmtime.

use std::time::Duration;

use weft_tests::guests;
use weft_tests::load::{BytesUpstream, FixedRate, Target, closed_loop, fixed_rate};

/// A filter entry for a `filters:` list, as a YAML flow mapping.
fn filter(name: &str, module: &str, extra: &str) -> String {
    format!("{{ name: {name}, module: {module:?}, {extra} }}")
}

/// One worker (as `--workers 1`), two routes: `/loop` behind a filter that spins through its
/// budget on every request (fail-open, so those requests still succeed), and `/ok` without it.
/// The spinning route must not take the other's share of the worker: its calls start yielding
/// after the first long one, and its breaker opens after a few overruns.
#[test]
fn a_spinning_filter_leaves_other_routes_their_share_of_one_worker() -> anyhow::Result<()> {
    let upstream = BytesUpstream::start(64)?;
    let yaml = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    filters: [{spin}]
    routes:
      - name: spinning
        match: {{ path: {{ prefix: /loop }} }}
        upstream: app
      - name: ok
        upstream: app
        filters: {{ spin: {{ disabled: true }} }}
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        upstream = upstream.addr(),
        spin = filter(
            "spin",
            guests::SPIN,
            "failure_policy: fail_open, time_budget: 50ms"
        ),
    );
    let proxy = weft_tests::SingleThreadProxy::start(&yaml)?;
    let target = |path: &str| Target {
        addr: proxy.addr(),
        path: path.to_owned(),
        headers: Vec::new(),
        body_len: Some(64),
    };
    let ok = target("/ok");
    // The baseline is measured before and after, so that whatever else this machine runs
    // weighs on both sides of the comparison.
    let before = closed_loop(
        &ok,
        8,
        Duration::from_millis(200),
        Duration::from_millis(1000),
    )?;

    // 200 requests/s to the spinning route, each of which would hold the worker for 50 ms:
    // ten times what one worker has, as in the attack this guards against.
    let spinning = target("/loop");
    let spinners = std::thread::spawn(move || {
        fixed_rate(
            &spinning,
            FixedRate {
                rate: 200,
                duration: Duration::from_millis(2200),
                warmup: Duration::ZERO,
                connections: 4,
            },
        )
    });
    let beside = closed_loop(
        &ok,
        8,
        Duration::from_millis(300),
        Duration::from_millis(1500),
    )?;
    let spun = spinners
        .join()
        .map_err(|_| anyhow::anyhow!("the spinning clients panicked"))??;
    let after = closed_loop(
        &ok,
        8,
        Duration::from_millis(100),
        Duration::from_millis(1000),
    )?;

    let baseline = (before.per_second() + after.per_second()) / 2.0;
    assert_eq!(
        before.errors + beside.errors + after.errors,
        0,
        "/ok never failed"
    );
    assert!(
        beside.per_second() >= baseline / 2.0,
        "/ok fell from {baseline:.0} to {:.0} requests/s beside a spinning filter",
        beside.per_second()
    );
    assert!(
        spun.count() > 0 && spun.errors == 0,
        "fail-open: the spinning route still answers"
    );
    let scrape = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(weft_tests::scrape(proxy.admin()))?;
    let short_circuits = scrape.require(
        "weft_filter_short_circuits_total",
        &[("filter", "spin"), ("reason", "breaker_open")],
    )?;
    let timeouts = scrape.require(
        "weft_filter_errors_total",
        &[("filter", "spin"), ("kind", "timeout")],
    )?;
    assert!(
        short_circuits > 0.0,
        "the breaker answered for the filter ({timeouts} timeouts)"
    );
    assert!(timeouts >= 5.0, "it opened after overruns: {timeouts}");
    Ok(())
}
