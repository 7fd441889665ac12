//! What the filter benches share: a runtime without a disk cache, a pooled filter with a budget
//! generous enough for a loaded machine, and a typical request head.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use weft_proxy::config::{Direction, FailurePolicy, Isolation};
use weft_proxy::metrics::Metrics;
use weft_proxy::runtime::{
    FilterSpec, LoadedFilter, RequestHead, RequestInfo, Runtime, RuntimeOptions,
};

/// A runtime as the proxy builds it, minus the on-disk compilation cache.
pub fn runtime() -> Runtime {
    let options = RuntimeOptions {
        cache_dir: None,
        ..RuntimeOptions::default()
    };
    Runtime::new(options, Arc::new(Metrics::new())).expect("runtime")
}

/// The guest at `wasm` (one of [`crate::guests`]) configured with `config` as filter `name`,
/// pooled and failing closed.
pub fn load(
    runtime: &Runtime,
    name: &str,
    wasm: &str,
    config: &serde_json::Value,
) -> Arc<LoadedFilter> {
    let module = runtime
        .load_module(Path::new(wasm))
        .unwrap_or_else(|e| panic!("loading {wasm}: {e:#}"));
    runtime
        .load_filter(FilterSpec {
            name,
            module,
            config,
            failure_policy: FailurePolicy::FailClosed,
            isolation: Isolation::Pooled,
            // Generous: a bench measures cost, and a wall-clock budget also counts the time a
            // thread is descheduled on a busy machine; 50 ms would abort a run on a hiccup.
            time_budget: Duration::from_secs(1),
            max_memory_bytes: 32 << 20,
        })
        .unwrap_or_else(|e| panic!("configuring {name}: {e:#}"))
}

/// `GET path` over HTTP/1.1 with nine filler headers (`x-extra-0` to `x-extra-8`) and `extra`.
pub fn request(path: &'static str, extra: &[(&'static str, &str)]) -> RequestHead {
    let mut headers = HeaderMap::new();
    for i in 0..9 {
        headers.insert(
            HeaderName::try_from(format!("x-extra-{i}")).expect("valid name"),
            HeaderValue::from_static("some value"),
        );
    }
    for (name, value) in extra {
        headers.insert(*name, HeaderValue::try_from(*value).expect("valid value"));
    }
    RequestHead {
        method: Method::GET,
        uri: Uri::from_static(path),
        version: Version::HTTP_11,
        headers,
        ..RequestHead::default()
    }
}

/// An inbound request from `127.0.0.1:50000` on route `default`.
pub fn info() -> RequestInfo {
    RequestInfo {
        client: Some("127.0.0.1:50000".parse().expect("addr")),
        listener: "inbound".into(),
        direction: Direction::Inbound,
        route: Some("default".into()),
    }
}
