//! Native verification cost of the two signatures filters check most: RS256 with a
//! 2048-bit key and ES256, on the RFC 7515 Appendix A.2 / A.3 examples.
//!
//! `cargo bench -p weft-crypto --bench verify`

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

#[path = "../tests/data/mod.rs"]
mod data;
#[path = "../tests/util/mod.rs"]
mod util;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use weft_crypto::{Algorithm, Key, verify};

fn bench_verify(c: &mut Criterion) {
    let (n, e) = (util::b64(data::RFC7515_A2_N), util::b64(data::RFC7515_A2_E));
    let rs256_signature = util::b64(data::RFC7515_A2_SIGNATURE);
    let rs256_message = data::RFC7515_A2_SIGNING_INPUT.as_bytes();
    assert_eq!(
        verify(
            Algorithm::Rs256,
            Key::Rsa { n: &n, e: &e },
            rs256_message,
            &rs256_signature
        ),
        Ok(true)
    );
    c.bench_function("verify/rs256-2048", |b| {
        b.iter(|| {
            verify(
                black_box(Algorithm::Rs256),
                black_box(Key::Rsa { n: &n, e: &e }),
                black_box(rs256_message),
                black_box(&rs256_signature),
            )
        })
    });

    let mut point = vec![0x04];
    point.extend(util::b64(data::RFC7515_A3_X));
    point.extend(util::b64(data::RFC7515_A3_Y));
    let es256_signature = util::b64(data::RFC7515_A3_SIGNATURE);
    let es256_message = data::RFC7515_A3_SIGNING_INPUT.as_bytes();
    assert_eq!(
        verify(
            Algorithm::Es256,
            Key::EcPoint(&point),
            es256_message,
            &es256_signature
        ),
        Ok(true)
    );
    c.bench_function("verify/es256", |b| {
        b.iter(|| {
            verify(
                black_box(Algorithm::Es256),
                black_box(Key::EcPoint(&point)),
                black_box(es256_message),
                black_box(&es256_signature),
            )
        })
    });
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
