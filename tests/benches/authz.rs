//! The authz filter's per-request cost on a warm pooled instance, through the real runtime:
//! JWT verification per algorithm with the verification cache hit (the same token again: the
//! steady state of a client) and missed (`cache_size: 0`: every request verifies the
//! signature), and API-key mode. Compare with `filters/authz/benches/verify.rs` (native).
//!
//! Run with: `cargo bench -p weft-tests --bench authz`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use weft_runtime::{Directives, Lease, LoadedFilter, RequestHead, Runtime, Verdict};
use weft_tests::bench;

#[path = "../fixtures/authz/sign.rs"]
mod sign;

use sign::Key;

fn request(auth_header: (&'static str, String)) -> RequestHead {
    bench::request("/orders/7?verbose=1", &[(auth_header.0, &auth_header.1)])
}

fn load(runtime: &Runtime, config: &Value) -> Arc<LoadedFilter> {
    bench::load(runtime, "authz", weft_tests::guests::AUTHZ, config)
}

/// A typical JWT config: forward the token (so the request can be reused unchanged between
/// iterations), one claim header, one allow rule on path and scope.
fn jwt_config(cache_size: usize) -> Value {
    json!({
        "jwt": {
            "jwks": sign::jwks(),
            "issuers": [sign::ISSUER],
            "audiences": [sign::AUDIENCE],
            "forward_token": true,
            "claims_to_headers": [{"claim": "sub", "header": "x-user-id"}],
            "cache_size": cache_size,
        },
        "rules": {"allow": [{"paths": [{"prefix": "/orders/"}], "claims": {"scope": "orders:read"}}]},
    })
}

fn authz(c: &mut Criterion) {
    let runtime = bench::runtime();
    let info = bench::info();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();

    let cached = load(&runtime, &jwt_config(256));
    let uncached = load(&runtime, &jwt_config(0));
    for (name, key) in [
        ("HS256", Key::Hs1),
        ("ES256", Key::Ec1),
        ("RS256", Key::Rsa1),
    ] {
        let token = sign::sign(key, &sign::claims(now));
        for (cache, filter) in [("cache-hit", &cached), ("cache-miss", &uncached)] {
            let mut head = request(("authorization", format!("Bearer {token}")));
            let mut lease = Lease::default();
            c.bench_function(&format!("authz/jwt/{name}/{cache}"), |b| {
                b.iter(|| {
                    let verdict = weft_runtime::block_on(filter.on_request_headers(
                        &mut lease,
                        &mut head,
                        &mut Directives::default(),
                        &info,
                    ))
                    .expect("authz never fails");
                    assert!(matches!(verdict, Verdict::Continue));
                    black_box(&head);
                })
            });
        }
    }

    let api_keys = load(
        &runtime,
        &json!({
            "api_keys": {
                "keys": [
                    {"name": "team-a", "sha256": "4c1f9f7bf6d8a3a2d8f2b1b1e3a3b0b86ef5a4c2b0dbd0dd2cf1a6b4a6a1c9f0"},
                    {"name": "team-b", "sha256": sha256_hex("key-of-team-b")},
                ],
                "forward_key": true,
                "name_header": "x-client",
            },
            "rules": {"allow": [{"identities": ["team-b"]}]},
        }),
    );
    let mut head = request(("x-api-key", "key-of-team-b".to_owned()));
    let mut lease = Lease::default();
    c.bench_function("authz/api-key", |b| {
        b.iter(|| {
            let verdict = weft_runtime::block_on(api_keys.on_request_headers(
                &mut lease,
                &mut head,
                &mut Directives::default(),
                &info,
            ))
            .expect("authz never fails");
            assert!(matches!(verdict, Verdict::Continue));
            black_box(&head);
        })
    });
}

fn sha256_hex(key: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = authz
}
criterion_main!(benches);
