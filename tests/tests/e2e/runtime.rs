//! The wasm runtime on its own and at its edges: what an operator sees when a guest panics,
//! and guests that use Rust's standard I/O.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, Uri, Version};
use weft_runtime::metrics::FilterMetrics;
use weft_runtime::{
    Direction, Directives, FailureKind, FailurePolicy, FilterSpec, Hook, Isolation, Lease,
    LoadedFilter, RequestHead, RequestInfo, Runtime, RuntimeOptions, block_on,
};
use weft_tests::{Proto, Upstream, get_with, guests, start_proxy};

use crate::{filter, one_route};

fn load(name: &str, module: &str) -> anyhow::Result<(Runtime, Arc<LoadedFilter>)> {
    let runtime = Runtime::new(
        RuntimeOptions::without_cache(),
        Arc::new(FilterMetrics::new()),
    )?;
    let module = runtime.load_module(Path::new(module))?;
    let filter = runtime.load_filter(FilterSpec {
        name,
        module,
        config: &serde_json::Value::Null,
        failure_policy: FailurePolicy::FailClosed,
        isolation: Isolation::Pooled,
        time_budget: Duration::from_millis(200),
        max_memory_bytes: 32 << 20,
    })?;
    Ok((runtime, filter))
}

fn request(path: &'static str) -> (RequestHead, RequestInfo) {
    let head = RequestHead {
        method: Method::GET,
        uri: Uri::from_static(path),
        version: Version::HTTP_11,
        headers: HeaderMap::new(),
    };
    let info = RequestInfo {
        client: None,
        listener: "inbound".into(),
        direction: Direction::Inbound,
        route: None,
        peer_identity: None,
    };
    (head, info)
}

#[test]
fn guest_panic_reports_message_filter_and_hook() -> anyhow::Result<()> {
    let (_runtime, filter) = load("boom", guests::TRAP)?;
    let (mut head, info) = request("/");
    let failure = block_on(filter.on_request_headers(
        &mut Lease::default(),
        &mut head,
        &mut Directives::default(),
        &info,
    ))
    .expect_err("the trap guest panics on every request");
    assert_eq!(failure.kind, FailureKind::Trap);
    assert_eq!(failure.hook, Hook::RequestHeaders);
    let shown = failure.to_string();
    for part in [
        "filter \"boom\"",
        "on-request-headers",
        "trap filter panicked on purpose",
    ] {
        assert!(
            shown.contains(part),
            "the operator must see {part:?}: {shown}"
        );
    }
    assert!(
        !shown.contains("unreachable"),
        "the panic message replaces wasm's opaque `unreachable`: {shown}"
    );
    Ok(())
}

#[test]
fn guest_timeout_is_reported_as_such() -> anyhow::Result<()> {
    let (_runtime, filter) = load("spinner", guests::SPIN)?;
    let (mut head, info) = request("/loop");
    let failure = block_on(filter.on_request_headers(
        &mut Lease::default(),
        &mut head,
        &mut Directives::default(),
        &info,
    ))
    .expect_err("the spin guest loops on /loop");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
    // The request head the guest was lent comes back intact after the trap.
    assert_eq!(head.uri.path(), "/loop");
    // The next call runs on a fiber that yields every tick: the budget still ends it.
    let failure = block_on(filter.on_request_headers(
        &mut Lease::default(),
        &mut head,
        &mut Directives::default(),
        &info,
    ))
    .expect_err("the spin guest loops on /loop");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
    assert_eq!(head.uri.path(), "/loop");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stdio_is_harmless_and_sleeping_traps() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let filters = [filter("stdio", guests::STDIO, "")];
    let proxy = start_proxy(&one_route(upstream.addr(), &filters)).await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, proxy.addr(), "/hello", &[]).await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
        assert_eq!(
            reply.seen()?.header("x-stdio"),
            Some("6"),
            "{proto:?}: println!, eprintln! and HashMap must work in a filter"
        );
        // A guest that blocks (thread::sleep) traps instead of stalling or crashing the proxy.
        let reply = get_with(proto, proxy.addr(), "/sleep", &[]).await?;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{proto:?}: {}",
            reply.text()
        );
        let reply = get_with(proto, proxy.addr(), "/after", &[]).await?;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{proto:?}: the proxy keeps serving"
        );
    }
    Ok(())
}

/// Set in the child process that runs [`compiling_filters_leaves_no_compiler_heap_resident`]
/// alone.
const MEMORY_CHILD: &str = "WEFT_RUNTIME_MEMORY_CHILD";

/// This process's anonymous resident memory (`RssAnon`), in bytes: the heap and the compiled
/// code, not the binary's pages.
fn anonymous_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon: N kB");
    kib << 10
}

/// A new pod compiles its filters (its module cache is empty). Compiling the four policy
/// filters takes tens of MiB of compiler memory, which stayed resident after the compile (27
/// MiB kept by wasmtime's per-thread compiler contexts, the rest free heap glibc kept): the
/// proxy idled at 51.6 MiB instead of the 20.9 MiB it idles at when it loads them from the
/// cache. The runtime now compiles in an engine of its own that it drops, and the proxy has
/// glibc return freed memory. Measured in a child process of this test binary that runs only
/// this test (other tests would move the number), set up as `weft-proxy`'s `main` does.
#[test]
fn compiling_filters_leaves_no_compiler_heap_resident() {
    if weft_tests::ran_alone_in_child(
        "runtime::compiling_filters_leaves_no_compiler_heap_resident",
        &[(MEMORY_CHILD, "1")],
    ) {
        return;
    }
    weft_runtime::memory::return_freed_memory();
    /// The compiled code of the four modules is a few MiB; before, the growth was 34 MiB.
    const MAX_GROWTH: u64 = 16 << 20;
    let runtime = Runtime::new(
        RuntimeOptions::without_cache(),
        Arc::new(FilterMetrics::new()),
    )
    .expect("a runtime");
    let before = anonymous_resident_bytes();
    let modules: Vec<_> = [
        guests::AUTHZ,
        guests::RATE_LIMIT,
        guests::HEADER_ROUTER,
        guests::FAULT_INJECTION,
    ]
    .into_iter()
    .map(|module| runtime.load_module(Path::new(module)).expect(module))
    .collect();
    let growth = anonymous_resident_bytes().saturating_sub(before);
    eprintln!(
        "compiling {} modules grew the anonymous resident memory by {:.1} MiB",
        modules.len(),
        growth as f64 / f64::from(1 << 20)
    );
    assert!(
        growth < MAX_GROWTH,
        "compiling the four policy filters left {:.1} MiB resident (at most {} MiB)",
        growth as f64 / f64::from(1 << 20),
        MAX_GROWTH >> 20
    );
}
