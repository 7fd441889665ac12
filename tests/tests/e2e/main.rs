//! End-to-end tests: the proxy started from YAML, real upstreams and a real gRPC service on
//! `127.0.0.1:0`, real guest filters compiled by `build.rs`.
//!
//! One test binary on purpose: each binary links wasmtime, and linking dominates build time.
//! Run with `cargo test --release -p weft-tests` (wasm is ~20x slower in debug builds).

mod authz;
mod balance;
mod contract;
mod control_plane;
mod discovery_cp;
mod discovery_proxy;
mod errors;
mod ext_authz;
mod fault_injection;
mod filters;
mod grpc;
mod hardening;
mod harness;
mod header_router;
mod host;
mod http;
mod identity;
mod kube_fake;
mod kubernetes;
mod kubernetes_examples;
mod load;
mod mesh;
mod metrics;
mod rate_limit;
mod reload;
mod resilience;
mod runtime;
mod upstream_pool;

use std::net::SocketAddr;

/// A filter entry for a `filters:` list, as a YAML flow mapping: `name`, `module`, and any extra
/// `key: value` fields (`config: {...}`, `failure_policy: fail_open`, ...).
fn filter(name: &str, module: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{{ name: {name}, module: {module:?}{extra} }}")
}

/// A config with an admin address, one `inbound` listener running `filters` (a list of
/// [`filter`] entries) and one catch-all route `app` to the upstream `app` at `upstream`.
fn one_route(upstream: SocketAddr, filters: &[String]) -> String {
    one_route_with(upstream, filters, &[])
}

/// [`one_route`], with extra fields (`protocol: http2`, ...) in the upstream's definition.
fn one_route_with(upstream: SocketAddr, filters: &[String], upstream_fields: &[&str]) -> String {
    let mut yaml = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters: [{filters}]
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        filters = filters.join(", ")
    );
    for field in upstream_fields {
        yaml.push_str(&format!("    {field}\n"));
    }
    yaml
}

/// The 1-based line of the first line of `yaml` containing `needle`, for asserting that errors
/// point at the right place.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the test's own YAML"))
        + 1
}

/// The `x-greeting` header of a `GET /` through the proxy at `addr` (the config-echo guest
/// sets it), or `<none>`.
async fn greeting(addr: SocketAddr) -> String {
    let reply = weft_tests::get(addr, "/", &[])
        .await
        .expect("the proxy answers");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.header("x-greeting").unwrap_or("<none>").to_owned()
}

/// Waits up to 15 s for [`greeting`] to be `want`.
async fn wait_for_greeting(addr: SocketAddr, want: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let got = greeting(addr).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy still answers with greeting {got:?}, not {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
