//! Native cost of verifying one token (no cache), per algorithm: the baseline for the same work
//! inside wasm, measured by `tests/benches/authz.rs`.
//!
//! Run with: `cargo bench -p authz --bench verify`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use authz::jwt::Verifier;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

#[path = "../../../tests/fixtures/authz/sign.rs"]
mod sign;

use sign::Key;

const NOW: u64 = 1_767_225_600;

fn verify(c: &mut Criterion) {
    let verifier = Verifier::from_json(&json!({
        "jwks": sign::jwks(),
        "issuers": [sign::ISSUER],
        "audiences": [sign::AUDIENCE],
    }))
    .expect("valid config");
    for (name, key) in [
        ("RS256", Key::Rsa1),
        ("ES256", Key::Ec1),
        ("HS256", Key::Hs1),
    ] {
        let token = sign::sign(key, &sign::claims(NOW));
        verifier.verify(&token, NOW).expect("the token is valid");
        c.bench_function(&format!("native/verify/{name}"), |b| {
            b.iter(|| black_box(verifier.verify(black_box(&token), NOW)).is_ok())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = verify
}
criterion_main!(benches);
