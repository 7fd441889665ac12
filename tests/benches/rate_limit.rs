//! The warm per-request cost of the rate-limit filter: one `on-request-headers` call on a
//! pooled instance, with the key fetched from the host, a take from the host's token bucket
//! and the decision counted; with `headers: true`, three quota headers added as well. Compare
//! with `hook_call` (the floor: one call that reads one header). Target: at most 2.5 µs.
//!
//! Run with: `cargo bench -p weft-tests --bench rate_limit`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weft_runtime::{Directives, Lease, LoadedFilter, Runtime, Verdict};
use weft_tests::bench;

/// A limit that never runs out during the bench (a refill of a billion tokens a millisecond).
fn limit(name: &str, key: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "key": key,
        "capacity": 1_000_000_000_000u64,
        "refill": { "amount": 1_000_000_000u64, "interval": "1ms" },
    })
}

fn load(runtime: &Runtime, name: &str, config: serde_json::Value) -> std::sync::Arc<LoadedFilter> {
    bench::load(runtime, name, weft_tests::guests::RATE_LIMIT, &config)
}

fn rate_limit(c: &mut Criterion) {
    let runtime = bench::runtime();
    let one = limit("per_client", serde_json::json!(["client_address"]));
    let cases = [
        (
            "one-limit-client-address",
            serde_json::json!({ "limits": [one] }),
        ),
        (
            "one-limit-client-address/headers",
            serde_json::json!({ "limits": [one], "headers": true }),
        ),
        (
            "two-limits",
            serde_json::json!({ "limits": [
                one,
                limit("per_tenant_path", serde_json::json!([{ "header": "x-tenant" }, "path"])),
            ]}),
        ),
    ];
    let info = bench::info();
    for (i, (case, config)) in cases.into_iter().enumerate() {
        let filter = load(&runtime, &format!("rl{i}"), config);
        let mut head = bench::request("/api/users/7?verbose=1", &[("x-tenant", "acme")]);
        let mut directives = Directives::default();
        let mut lease = Lease::default();
        c.bench_function(&format!("rate_limit/warm/{case}"), |b| {
            b.iter(|| {
                // The filter adds quota headers to the response; start each call clean.
                directives.response_headers.clear();
                let verdict = weft_runtime::block_on(filter.on_request_headers(
                    &mut lease,
                    &mut head,
                    &mut directives,
                    &info,
                ))
                .expect("the filter never fails");
                assert!(matches!(verdict, Verdict::Continue));
                black_box(&head);
            })
        });
    }

    // The limited path: every call answers 429.
    let filter = load(
        &runtime,
        "rl-limited",
        serde_json::json!({ "limits": [{
            "name": "per_client",
            "key": ["client_address"],
            "capacity": 1,
            "refill": { "amount": 1, "interval": "1h" },
        }]}),
    );
    let mut head = bench::request("/api/users/7?verbose=1", &[("x-tenant", "acme")]);
    let mut lease = Lease::default();
    c.bench_function("rate_limit/warm/limited-429", |b| {
        b.iter(|| {
            let verdict = weft_runtime::block_on(filter.on_request_headers(
                &mut lease,
                &mut head,
                &mut Directives::default(),
                &info,
            ))
            .expect("the filter never fails");
            black_box(verdict);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = rate_limit
}
criterion_main!(benches);
