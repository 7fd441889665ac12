//! The control plane streaming filters to proxies: a real `weft-controlplane` server and
//! directory source in-process, real proxies subscribing over gRPC on `127.0.0.1:0`.
//!
//! Covered: hot swaps under load with zero failed requests and no mixed versions, NACKs for a
//! module that does not compile, a config `configure` rejects and a digest mismatch (the old
//! chain keeps serving; the control plane records why), control plane restarts, a proxy
//! restarting with the control plane down (it serves its last good chain from disk), only
//! selected proxies getting a filter, and mTLS refusing a proxy with the wrong certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{greeting, wait_for_greeting};
use weft_controlplane::{Catalog, ProxyStatus};
use weft_tests::control_plane::{
    TestCa, TestControlPlane, catalog_filter, definition, proxy_section, sha256_hex,
};
use weft_tests::{Proto, Upstream, get_with, guests, scrape, start_proxy};

const WAIT: Duration = Duration::from_secs(10);

/// A proxy config with one catch-all route to `upstream`, no local filters, subscribed to
/// the control plane at `cp` as `name` with `labels`.
fn proxy_config(upstream: SocketAddr, cp: &str, name: &str, labels: &str, state: &Path) -> String {
    format!(
        "{}{}",
        crate::one_route(upstream, &[]),
        proxy_section(cp, name, labels, state, None)
    )
}

/// Definition of a config-echo filter: responses get `x-greeting: <greeting>`.
fn greeter(name: &str, greeting: &str) -> String {
    definition(
        name,
        "config_echo.wasm",
        "{ app: shop }",
        &format!("  config:\n    greeting: {greeting:?}\n"),
    )
}

fn acked(version: u64) -> impl Fn(&ProxyStatus) -> bool {
    move |p| {
        p.serving_version >= version
            && p.last_report
                .as_ref()
                .is_some_and(|r| r.accepted && r.version >= version)
    }
}

#[tokio::test]
async fn a_definition_file_reaches_the_selected_proxy_and_edits_roll_out() {
    let upstream = Upstream::start().await.expect("upstream");
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.copy_module(guests::CONFIG_ECHO, "config_echo.wasm")
        .expect("module");
    let state = tempfile::tempdir().expect("state dir");
    let other_state = tempfile::tempdir().expect("state dir");
    let address = format!("http://{}", cp.addr());
    let shop = start_proxy(&proxy_config(
        upstream.addr(),
        &address,
        "shop-0",
        "{ app: shop }",
        state.path(),
    ))
    .await
    .expect("proxy");
    let other = start_proxy(&proxy_config(
        upstream.addr(),
        &address,
        "billing-0",
        "{ app: billing }",
        other_state.path(),
    ))
    .await
    .expect("proxy");

    cp.write("greeter.yaml", greeter("greeter", "hello"))
        .expect("definition");
    wait_for_greeting(shop.addr(), "hello").await;
    // The other proxy is not selected by `app: shop`: it runs no filter.
    cp.wait_for_proxy("billing-0", WAIT, |p| p.connected)
        .await
        .expect("the other proxy subscribes");
    assert_eq!(greeting(other.addr()).await, "<none>");
    assert!(cp.proxy("billing-0").expect("status").filters.is_empty());

    cp.write("greeter.yaml", greeter("greeter", "hello again"))
        .expect("edit");
    wait_for_greeting(shop.addr(), "hello again").await;
    let status = cp
        .wait_for_proxy("shop-0", WAIT, acked(cp.control_plane.version()))
        .await
        .expect("the proxy ACKs");
    assert_eq!(status.filters.len(), 1, "{status:#?}");
    assert_eq!(status.filters[0].name, "default/greeter");
    assert_eq!(status.filters[0].generation, 2, "{status:#?}");

    // Deleting the definition removes the filter.
    std::fs::remove_file(cp.dir().join("greeter.yaml")).expect("delete");
    wait_for_greeting(shop.addr(), "<none>").await;
    let metrics = scrape(shop.admin()).await.expect("metrics");
    assert_eq!(
        metrics.value("weft_control_plane_connected", &[]),
        Some(1.0),
        "{}",
        metrics.text
    );
}

/// Two filters in one snapshot stamp the version on the request (header-router, seen by the
/// upstream) and on the response (config-echo): both must always agree.
fn versioned_catalog(version: u64, router: &[u8], echo: &[u8]) -> Catalog {
    let router_digest = sha256_hex(router);
    let echo_digest = sha256_hex(echo);
    let stamp = definition(
        "stamp",
        "router.wasm",
        "{}",
        &format!(
            "  phase: Authn\n  config:\n    rules:\n      - name: all\n        upstream: app\n        request_headers:\n          set: {{ x-version: \"{version}\" }}\n"
        ),
    );
    let echo_def = definition(
        "echo",
        "echo.wasm",
        "{}",
        &format!("  config:\n    greeting: \"{version}\"\n"),
    );
    Catalog {
        filters: vec![
            catalog_filter(&stamp, &router_digest, version as i64).expect("stamp definition"),
            catalog_filter(&echo_def, &echo_digest, version as i64).expect("echo definition"),
        ],
        modules: [
            (router_digest, router.to_vec().into()),
            (echo_digest, echo.to_vec().into()),
        ]
        .into_iter()
        .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_load_fail_no_request_and_never_mix_versions() {
    const SWAPS: u64 = 60;
    const CLIENTS: usize = 8;
    let router = std::fs::read(guests::HEADER_ROUTER).expect("module");
    let echo = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let upstream = Upstream::start().await.expect("upstream");
    let cp = TestControlPlane::start_at("127.0.0.1:0".parse().expect("address"), None, false)
        .await
        .expect("control plane");
    cp.control_plane
        .publish(versioned_catalog(1, &router, &echo));
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config(
        upstream.addr(),
        &format!("http://{}", cp.addr()),
        "load-0",
        "{}",
        state.path(),
    ))
    .await
    .expect("proxy");
    wait_for_greeting(proxy.addr(), "1").await;

    let current = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (addr, stop, current) = (proxy.addr(), stop.clone(), current.clone());
        clients.spawn(async move {
            let proto = if i % 2 == 0 { Proto::Http1 } else { Proto::H2c };
            let (mut sent, mut last) = (0u64, 0u64);
            while !stop.load(Ordering::Acquire) {
                let floor = current.load(Ordering::Acquire);
                let reply = get_with(proto, addr, "/", &[]).await.map_err(|e| format!("request {sent} failed: {e:#}"))?;
                sent += 1;
                if reply.status != 200 {
                    return Err(format!("request {sent}: status {}: {}", reply.status, reply.text()));
                }
                let response_side: u64 = reply.header("x-greeting").and_then(|v| v.parse().ok()).ok_or("no x-greeting")?;
                let seen = reply.seen().map_err(|e| e.to_string())?;
                let request_side: u64 = seen.header("x-version").and_then(|v| v.parse().ok()).ok_or("no x-version")?;
                if request_side != response_side {
                    return Err(format!("request {sent} mixed versions: request side {request_side}, response side {response_side}"));
                }
                // Versions only move forward, and never lag what was fully rolled out before the
                // request started.
                if response_side < last || response_side + 1 < floor {
                    return Err(format!("request {sent} saw version {response_side} after {last} (rolled out: {floor})"));
                }
                last = response_side;
            }
            Ok::<u64, String>(sent)
        });
    }

    for version in 2..=SWAPS {
        cp.control_plane
            .publish(versioned_catalog(version, &router, &echo));
        let cp_version = cp.control_plane.version();
        cp.wait_for_proxy("load-0", WAIT, acked(cp_version))
            .await
            .expect("every version is ACKed");
        current.store(version, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    let mut total = 0;
    while let Some(result) = clients.join_next().await {
        total += result
            .expect("client task")
            .expect("no failed or mixed request");
    }
    assert!(
        total >= 2000,
        "only {total} requests were sent during the swaps"
    );
    assert_eq!(greeting(proxy.addr()).await, SWAPS.to_string());
    let metrics = scrape(proxy.admin()).await.expect("metrics");
    let applied = metrics
        .value(
            "weft_config_updates_total",
            &[("source", "control_plane"), ("result", "applied")],
        )
        .unwrap_or(0.0);
    assert!(
        applied >= SWAPS as f64,
        "{applied} updates applied\n{}",
        metrics.text
    );
}

#[tokio::test]
async fn bad_snapshots_are_nacked_with_the_reason_and_the_old_chain_keeps_serving() {
    let upstream = Upstream::start().await.expect("upstream");
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.copy_module(guests::CONFIG_ECHO, "config_echo.wasm")
        .expect("module");
    cp.write("greeter.yaml", greeter("greeter", "good"))
        .expect("definition");
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config(
        upstream.addr(),
        &format!("http://{}", cp.addr()),
        "shop-0",
        "{ app: shop }",
        state.path(),
    ))
    .await
    .expect("proxy");
    wait_for_greeting(proxy.addr(), "good").await;
    let nacked = |p: &ProxyStatus| p.last_report.as_ref().is_some_and(|r| !r.accepted);
    let errors = |p: &ProxyStatus| {
        p.last_report
            .as_ref()
            .map(|r| {
                r.errors
                    .iter()
                    .map(|e| format!("{}: {}", e.filter, e.message))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };

    // 1. A config the filter's `configure` rejects.
    cp.write("greeter.yaml", greeter("greeter", ""))
        .expect("edit");
    let status = cp
        .wait_for_proxy("shop-0", WAIT, nacked)
        .await
        .expect("NACK");
    let why = errors(&status);
    assert!(
        why.contains("default/greeter") && why.contains("greeting must not be empty"),
        "{why}"
    );
    assert_eq!(greeting(proxy.addr()).await, "good", "the old chain serves");
    assert_eq!(status.serving_version, proxy.snapshot_version());

    // 2. A module that does not compile.
    let before = cp.control_plane.version();
    cp.write("broken.wasm", b"\0asm this is not a component")
        .expect("module");
    cp.write(
        "greeter.yaml",
        greeter("greeter", "good").replace("config_echo.wasm", "broken.wasm"),
    )
    .expect("edit");
    let status = cp
        .wait_for_proxy("shop-0", WAIT, |p| {
            nacked(p) && p.last_report.as_ref().is_some_and(|r| r.version > before)
        })
        .await
        .expect("NACK");
    let why = errors(&status);
    assert!(
        why.contains("default/greeter") && why.contains("not a valid WebAssembly component"),
        "{why}"
    );
    assert_eq!(greeting(proxy.addr()).await, "good", "the old chain serves");

    // 3. A digest mismatch: a control plane that sends bytes other than those the digest
    // names (published directly: the directory source checks digests itself).
    let mut tampered = std::fs::read(guests::CONFIG_ECHO).expect("module");
    tampered.push(0);
    let named = sha256_hex(b"the module the definition names");
    let mut catalog = Catalog::default();
    catalog
        .filters
        .push(catalog_filter(&greeter("greeter", "tampered"), &named, 1).expect("definition"));
    catalog.modules.insert(named.clone(), tampered.into());
    let direct = TestControlPlane::start_at("127.0.0.1:0".parse().expect("address"), None, false)
        .await
        .expect("control plane");
    direct.control_plane.publish(catalog);
    let state2 = tempfile::tempdir().expect("state dir");
    let proxy2 = start_proxy(&proxy_config(
        upstream.addr(),
        &format!("http://{}", direct.addr()),
        "shop-1",
        "{ app: shop }",
        state2.path(),
    ))
    .await
    .expect("proxy");
    let status = direct
        .wait_for_proxy("shop-1", WAIT, nacked)
        .await
        .expect("NACK");
    let why = errors(&status);
    assert!(
        why.contains("default/greeter") && why.contains("sha256 mismatch") && why.contains(&named),
        "{why}"
    );
    assert_eq!(
        greeting(proxy2.addr()).await,
        "<none>",
        "nothing unverified runs"
    );
    assert_eq!(proxy2.snapshot_version(), 0);
}

#[tokio::test]
async fn a_control_plane_restart_does_not_touch_traffic_and_the_proxy_converges() {
    let upstream = Upstream::start().await.expect("upstream");
    let mut cp = TestControlPlane::start().await.expect("control plane");
    let address = cp.addr();
    cp.copy_module(guests::CONFIG_ECHO, "config_echo.wasm")
        .expect("module");
    cp.write("greeter.yaml", greeter("greeter", "before"))
        .expect("definition");
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config(
        upstream.addr(),
        &format!("http://{address}"),
        "shop-0",
        "{ app: shop }",
        state.path(),
    ))
    .await
    .expect("proxy");
    wait_for_greeting(proxy.addr(), "before").await;

    cp.stop().await;
    for _ in 0..50 {
        assert_eq!(
            greeting(proxy.addr()).await,
            "before",
            "traffic is unaffected"
        );
    }
    let metrics = scrape(proxy.admin()).await.expect("metrics");
    assert_eq!(
        metrics.value("weft_control_plane_connected", &[]),
        Some(0.0),
        "{}",
        metrics.text
    );

    // A new control plane on the same address, with a changed definition.
    let dir = cp.into_dir();
    std::fs::write(dir.path().join("greeter.yaml"), greeter("greeter", "after")).expect("edit");
    let cp = TestControlPlane::start_with_dir(address, None, Some(dir))
        .await
        .expect("control plane restarts");
    wait_for_greeting(proxy.addr(), "after").await;
    cp.wait_for_proxy("shop-0", WAIT, acked(cp.control_plane.version()))
        .await
        .expect("the proxy reconnects and ACKs");
}

#[tokio::test]
async fn a_proxy_restarted_with_the_control_plane_down_serves_its_last_good_chain() {
    let upstream = Upstream::start().await.expect("upstream");
    let mut cp = TestControlPlane::start().await.expect("control plane");
    cp.copy_module(guests::CONFIG_ECHO, "config_echo.wasm")
        .expect("module");
    cp.write("greeter.yaml", greeter("greeter", "remembered"))
        .expect("definition");
    let state = tempfile::tempdir().expect("state dir");
    let config = proxy_config(
        upstream.addr(),
        &format!("http://{}", cp.addr()),
        "shop-0",
        "{ app: shop }",
        state.path(),
    );
    let proxy = start_proxy(&config).await.expect("proxy");
    wait_for_greeting(proxy.addr(), "remembered").await;
    // The chain swaps a moment before the proxy records the snapshot's version (and before
    // it ACKs), so wait for the ACK: then the version on disk is the one read here.
    let version = cp.control_plane.version();
    cp.wait_for_proxy("shop-0", WAIT, acked(version))
        .await
        .expect("the proxy ACKs");
    assert_eq!(proxy.snapshot_version(), version);
    proxy.shutdown().await;
    cp.stop().await;

    let restarted = start_proxy(&config)
        .await
        .expect("the proxy starts without its control plane");
    assert_eq!(
        greeting(restarted.addr()).await,
        "remembered",
        "served from disk at once"
    );
    assert_eq!(restarted.snapshot_version(), version);
}

#[tokio::test]
async fn mtls_refuses_a_proxy_with_a_certificate_from_another_ca() {
    let upstream = Upstream::start().await.expect("upstream");
    let ca = TestCa::new("weft test CA").expect("CA");
    let rogue = TestCa::new("rogue CA").expect("CA");
    let tls = ca.server_tls().expect("server certificate");
    let cp = TestControlPlane::start_at("127.0.0.1:0".parse().expect("address"), Some(&tls), true)
        .await
        .expect("control plane");
    cp.copy_module(guests::CONFIG_ECHO, "config_echo.wasm")
        .expect("module");
    cp.write("greeter.yaml", greeter("greeter", "secret"))
        .expect("definition");
    let address = format!("https://127.0.0.1:{}", cp.addr().port());

    let good_certs = ca
        .client("shop-0", "default", &ca)
        .expect("client certificate");
    let state = tempfile::tempdir().expect("state dir");
    let good = start_proxy(&format!(
        "{}{}",
        crate::one_route(upstream.addr(), &[]),
        proxy_section(
            &address,
            "shop-0",
            "{ app: shop }",
            state.path(),
            Some(&good_certs)
        )
    ))
    .await
    .expect("proxy");
    wait_for_greeting(good.addr(), "secret").await;

    let rogue_certs = rogue
        .client("shop-1", "default", &ca)
        .expect("client certificate");
    let state = tempfile::tempdir().expect("state dir");
    let refused = start_proxy(&format!(
        "{}{}",
        crate::one_route(upstream.addr(), &[]),
        proxy_section(
            &address,
            "shop-1",
            "{ app: shop }",
            state.path(),
            Some(&rogue_certs)
        )
    ))
    .await
    .expect("the proxy starts and serves without its control plane");
    // Give it several reconnect attempts: it never gets the filter, its traffic flows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(greeting(refused.addr()).await, "<none>");
    assert!(
        cp.proxy("shop-1").is_none(),
        "the control plane never saw its hello"
    );
    let metrics = scrape(refused.admin()).await.expect("metrics");
    assert_eq!(
        metrics.value("weft_control_plane_connected", &[]),
        Some(0.0),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn a_filter_sees_only_the_requests_its_match_names() {
    let upstream = Upstream::start().await.expect("upstream");
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.copy_module(guests::CONFIG_ECHO, "config_echo.wasm")
        .expect("module");
    cp.write(
        "greeter.yaml",
        greeter("greeter", "matched").replace(
            "  config:",
            "  match:\n    direction: Inbound\n    routes: [api]\n    pathPrefixes: [/api/v1]\n    methods: [GET]\n  config:",
        ),
    )
    .expect("definition");
    let state = tempfile::tempdir().expect("state dir");
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    routes:
      - {{ name: api, match: {{ path: {{ prefix: /api }} }}, upstream: app }}
      - {{ name: other, upstream: app }}
  - name: outbound
    address: 127.0.0.1:0
    direction: outbound
    routes: [{{ name: api, upstream: app }}]
upstreams: [{{ name: app, endpoints: ["{}"] }}]
{}"#,
        upstream.addr(),
        proxy_section(
            &format!("http://{}", cp.addr()),
            "shop-0",
            "{ app: shop }",
            state.path(),
            None
        )
    );
    let proxy = start_proxy(&yaml).await.expect("proxy");
    cp.wait_for_proxy("shop-0", WAIT, |p| {
        p.filters.len() == 1
            && p.last_report
                .as_ref()
                .is_some_and(|r| r.accepted && r.version == p.sent_version)
    })
    .await
    .expect("the proxy ACKs the filter");
    let inbound = proxy.listener("inbound");
    let cases = [
        (inbound, "GET", "/api/v1/users", "matched"),
        (inbound, "POST", "/api/v1/users", "<none>"), // method
        (inbound, "GET", "/api/v2/users", "<none>"),  // path prefix
        (inbound, "GET", "/elsewhere", "<none>"),     // route
        (proxy.listener("outbound"), "GET", "/api/v1/users", "<none>"), // direction
    ];
    for (addr, method, path, want) in cases {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(weft_tests::empty())
            .expect("request");
        let reply = weft_tests::send(&weft_tests::http1_client(), request)
            .await
            .expect("the proxy answers");
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.text());
        assert_eq!(
            reply.header("x-greeting").unwrap_or("<none>"),
            want,
            "{method} {path} on {addr}"
        );
    }
}
