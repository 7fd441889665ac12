//! The cost of verifying one token (no cache) per algorithm, natively: the filter's verifier end
//! to end (parse, key selection, signature, claims), and the signature check alone. Natively,
//! `weft_sdk::crypto` runs the host's own code (weft-crypto, ring) in process, so the signature
//! part is what the proxy spends on it; in the proxy a filter adds the host call (copying the
//! key, message and signature out of wasm), measured through the real runtime by
//! `tests/benches/authz.rs`.
//!
//! Run with: `cargo bench -p authz --bench verify`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use authz::jwt::Verifier;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use weft_sdk::crypto::{self, Algorithm, VerifyingKey};

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

/// A JWK member, base64url-decoded.
fn member(kid: &str, name: &str) -> Vec<u8> {
    let jwks = sign::jwks_with(&[kid]);
    let text = jwks["keys"][0][name].as_str().expect("member");
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// `(signing input, signature)` of a token signed by `key`.
fn signed(key: Key, claims: &Value) -> (Vec<u8>, Vec<u8>) {
    let token = sign::sign(key, claims);
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    (input.as_bytes().to_vec(), signature)
}

fn signature_only(c: &mut Criterion) {
    let claims = sign::claims(NOW);
    let (n, e) = (member("rsa-1", "n"), member("rsa-1", "e"));
    let point = [&[0x04], &member("ec-1", "x")[..], &member("ec-1", "y")[..]].concat();
    for (name, algorithm, key, signer) in [
        (
            "RS256",
            Algorithm::Rs256,
            VerifyingKey::Rsa { n: &n, e: &e },
            Key::Rsa1,
        ),
        (
            "ES256",
            Algorithm::Es256,
            VerifyingKey::EcPoint(&point),
            Key::Ec1,
        ),
    ] {
        let (input, signature) = signed(signer, &claims);
        assert_eq!(crypto::verify(algorithm, key, &input, &signature), Ok(true));
        c.bench_function(&format!("native/crypto-verify/{name}"), |b| {
            b.iter(|| crypto::verify(algorithm, key, black_box(&input), black_box(&signature)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = verify, signature_only
}
criterion_main!(benches);
