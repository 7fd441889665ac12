//! The cost of one `on-request-headers` call on a warm pooled instance, where the filter reads a
//! single header — the per-filter floor every request pays. Target: at most 1 µs.
//!
//! Run with: `cargo bench -p weft-tests --bench hook_call`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use weft_proxy::config::{Direction, FailurePolicy, Isolation};
use weft_proxy::metrics::Metrics;
use weft_proxy::runtime::{
    FilterSpec, Lease, RequestHead, RequestInfo, Runtime, RuntimeOptions, Verdict,
};

fn request() -> RequestHead {
    let mut headers = HeaderMap::new();
    for i in 0..9 {
        headers.insert(
            http::HeaderName::try_from(format!("x-extra-{i}")).expect("valid name"),
            HeaderValue::from_static("some value"),
        );
    }
    headers.insert("x-user", HeaderValue::from_static("alice"));
    RequestHead {
        method: Method::GET,
        uri: Uri::from_static("/api/users/7?verbose=1"),
        version: Version::HTTP_11,
        headers,
        ..RequestHead::default()
    }
}

fn hook_call(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new());
    let options = RuntimeOptions {
        cache_dir: None,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(options, metrics).expect("runtime");
    let module = runtime
        .load_module(Path::new(weft_tests::guests::NOOP))
        .expect("noop module");
    let config = serde_json::Value::Null;
    let filter = runtime
        .load_filter(FilterSpec {
            name: "noop",
            module,
            config: &config,
            failure_policy: FailurePolicy::FailClosed,
            isolation: Isolation::Pooled,
            time_budget: Duration::from_millis(50),
            max_memory_bytes: 32 << 20,
        })
        .expect("noop filter");
    let info = RequestInfo {
        client: Some("127.0.0.1:50000".parse().expect("addr")),
        listener: "inbound".into(),
        direction: Direction::Inbound,
        route: Some("default".into()),
    };
    let mut head = request();
    let mut lease = Lease::default();
    c.bench_function("on_request_headers/warm/read-one-header", |b| {
        b.iter(|| {
            let verdict = filter
                .on_request_headers(&mut lease, &mut head, &info)
                .expect("noop never fails");
            assert!(matches!(verdict, Verdict::Continue));
            black_box(&head);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = hook_call
}
criterion_main!(benches);
