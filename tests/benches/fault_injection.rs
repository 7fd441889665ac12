//! What the fault-injection filter costs normal traffic: one warm `on-request-headers` call on a
//! request that no fault fires for, next to the noop filter's call (the floor every filter
//! pays). Targets: at most 2.5 µs per call in all, so at most ~0.5 µs over noop.
//!
//! Run with: `cargo bench -p weft-tests --bench fault_injection`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use weft_runtime::{Directives, Lease, Verdict};
use weft_tests::bench;

fn no_fault(c: &mut Criterion) {
    let runtime = bench::runtime();
    let never = json!({
        "abort": {"status": 503, "percentage": 0},
        "delay": {"duration": "100ms", "percentage": 0},
    });
    let cases = [
        (
            "noop (floor)",
            weft_tests::guests::NOOP,
            serde_json::Value::Null,
        ),
        ("0%", weft_tests::guests::FAULT_INJECTION, never.clone()),
        (
            "0% + header_faults, no fault header",
            weft_tests::guests::FAULT_INJECTION,
            {
                let mut config = never.clone();
                config["header_faults"] = json!(true);
                config
            },
        ),
        (
            "100% but outside only.routes",
            weft_tests::guests::FAULT_INJECTION,
            json!({
                "abort": {"status": 503, "percentage": 100},
                "only": {"routes": ["checkout"]},
            }),
        ),
        (
            "10% abort (90% pass, 10% local reply)",
            weft_tests::guests::FAULT_INJECTION,
            json!({
                "abort": {"status": 503, "percentage": 10},
            }),
        ),
    ];
    let info = bench::info();
    let mut group = c.benchmark_group("fault_injection/on_request_headers");
    for (i, (label, wasm, config)) in cases.into_iter().enumerate() {
        let filter = bench::load(&runtime, &format!("f{i}"), wasm, &config);
        // Ten ordinary headers and no `x-weft-fault-*` header.
        let mut head = bench::request("/api/users/7?verbose=1", &[("x-user", "alice")]);
        let mut directives = Directives {
            upstream: Some("backend".into()),
            ..Directives::default()
        };
        let mut lease = Lease::default();
        group.bench_function(label, |b| {
            b.iter(|| {
                let verdict = weft_runtime::block_on(filter.on_request_headers(
                    &mut lease,
                    &mut head,
                    &mut directives,
                    &info,
                ))
                .expect("the filter never fails");
                assert!(matches!(verdict, Verdict::Continue | Verdict::Respond(_)));
                black_box(&head);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = no_fault
}
criterion_main!(benches);
