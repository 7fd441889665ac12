//! The cost of one `on-request-headers` call on a warm pooled instance, where the filter reads a
//! single header — the per-filter floor every request pays. Target: at most 1 µs.
//!
//! Run with: `cargo bench -p weft-tests --bench hook_call`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weft_runtime::{Directives, Lease, Verdict};
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = hook_call
}
criterion_main!(benches);
