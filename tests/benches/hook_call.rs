//! The cost of one `on-request-headers` call on a warm pooled instance, where the filter reads a
//! single header — the per-filter floor every request pays. Target: at most 1 µs.
//!
//! Beside it, in the same run: the same filter built against `weft:filter@0.2.0` (what the
//! adapter adds), and what `weft:filter@0.3.0` added — a `call` round trip through the runtime
//! (the hook returning `call`, then `on-call-response` with an answer; the network is not in
//! it), and a compare-and-swap increment on the shared store.
//!
//! Run with: `cargo bench -p weft-tests --bench hook_call`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, StatusCode};
use weft_runtime::{CallResponse, Directives, Lease, Verdict};
use weft_tests::bench;

fn hook_call(c: &mut Criterion) {
    let runtime = bench::runtime();
    let filter = bench::load(
        &runtime,
        "noop",
        weft_tests::guests::NOOP,
        &serde_json::Value::Null,
    );
    let info = bench::info();
    let mut head = bench::request("/api/users/7?verbose=1", &[("x-user", "alice")]);
    let mut lease = Lease::default();
    c.bench_function("on_request_headers/warm/read-one-header", |b| {
        b.iter(|| {
            let verdict = weft_runtime::block_on(filter.on_request_headers(
                &mut lease,
                &mut head,
                &mut Directives::default(),
                &info,
            ))
            .expect("noop never fails");
            assert!(matches!(verdict, Verdict::Continue));
            black_box(&head);
        })
    });

    let old = bench::load(
        &runtime,
        "noop-0.2",
        weft_tests::guests::NOOP_V02,
        &serde_json::Value::Null,
    );
    c.bench_function(
        "on_request_headers/warm/read-one-header/built-for-0.2",
        |b| {
            b.iter(|| {
                let verdict = weft_runtime::block_on(old.on_request_headers(
                    &mut lease,
                    &mut head,
                    &mut Directives::default(),
                    &info,
                ))
                .expect("noop never fails");
                assert!(matches!(verdict, Verdict::Continue));
            })
        },
    );

    let callout = bench::load(
        &runtime,
        "callout",
        weft_tests::guests::CALLOUT,
        &serde_json::Value::Null,
    );
    let mut calling = bench::request("/x", &[("x-call", "authz")]);
    c.bench_function("call/round-trip-without-network", |b| {
        b.iter(|| {
            let mut lease = Lease::default();
            let mut directives = Directives::default();
            let verdict = weft_runtime::block_on(callout.on_request_headers(
                &mut lease,
                &mut calling,
                &mut directives,
                &info,
            ))
            .expect("no failure");
            assert!(matches!(verdict, Verdict::Call(Ok(_))));
            let answer = CallResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"ok"),
            };
            let verdict = weft_runtime::block_on(callout.on_call_response(
                &mut lease,
                &mut calling,
                &mut directives,
                &info,
                Ok(answer),
            ))
            .expect("no failure");
            assert!(matches!(verdict, Verdict::Continue));
        })
    });

    let mut counting = bench::request("/x", &[("x-count", "hits")]);
    c.bench_function("store/compare-and-swap-increment-in-a-hook", |b| {
        b.iter(|| {
            let verdict = weft_runtime::block_on(callout.on_request_headers(
                &mut Lease::default(),
                &mut counting,
                &mut Directives::default(),
                &info,
            ))
            .expect("no failure");
            assert!(matches!(verdict, Verdict::Continue));
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = hook_call
}
criterion_main!(benches);
