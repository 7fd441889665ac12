//! `verify` and `digest` against published vectors (see `data/mod.rs` for the sources),
//! and the ways a signature, message or key can be wrong.

#![allow(clippy::unwrap_used, reason = "tests")]

mod data;
mod util;

use data::*;
use util::{b64, flip, hex, rsa_public_key_der};
use weft_crypto::{Algorithm, DigestAlgorithm, Key, KeyError, digest, verify};

// ---------------------------------------------------------------------------------------
// Helpers.

/// The RFC 7515 A.2 key as (n, e).
fn rfc7515_rsa() -> (Vec<u8>, Vec<u8>) {
    (b64(RFC7515_A2_N), b64(RFC7515_A2_E))
}

/// The RFC 7515 A.3 key as an uncompressed point.
fn rfc7515_ec_point() -> Vec<u8> {
    let mut point = vec![0x04];
    point.extend(b64(RFC7515_A3_X));
    point.extend(b64(RFC7515_A3_Y));
    point
}

/// Asserts that `signature` verifies, and that every corruption of it or of `message`
/// does not: flipped bits (first, middle and last byte of each), truncated, extended,
/// empty, and huge signatures are all `Ok(false)`.
fn assert_valid_and_tamper_evident(
    algorithm: Algorithm,
    key: Key<'_>,
    message: &[u8],
    signature: &[u8],
) {
    assert_eq!(
        verify(algorithm, key, message, signature),
        Ok(true),
        "{algorithm}: the published signature must verify"
    );

    let last = signature.len() - 1;
    for (index, bit) in [
        (0, 0),
        (0, 7),
        (signature.len() / 2, 3),
        (last, 0),
        (last, 7),
    ] {
        assert_eq!(
            verify(algorithm, key, message, &flip(signature, index, bit)),
            Ok(false),
            "{algorithm}: signature bit {bit} of byte {index} flipped"
        );
    }

    if message.is_empty() {
        assert_eq!(
            verify(algorithm, key, &[0], signature),
            Ok(false),
            "{algorithm}: a byte appended to the empty message"
        );
    } else {
        let last = message.len() - 1;
        for (index, bit) in [(0, 0), (message.len() / 2, 5), (last, 7)] {
            assert_eq!(
                verify(algorithm, key, &flip(message, index, bit), signature),
                Ok(false),
                "{algorithm}: message bit {bit} of byte {index} flipped"
            );
        }
        assert_eq!(
            verify(algorithm, key, &message[..last], signature),
            Ok(false),
            "{algorithm}: message truncated"
        );
    }

    let mut appended = signature.to_vec();
    appended.push(0);
    let mut prepended = vec![0];
    prepended.extend_from_slice(signature);
    let mut huge = signature.to_vec();
    huge.resize(1 << 20, 0xa5);
    for (what, bad) in [
        ("truncated by one byte", &signature[..last]),
        ("truncated to one byte", &signature[..1]),
        ("empty", &[][..]),
        ("with a zero byte appended", &appended[..]),
        ("with a zero byte prepended", &prepended[..]),
        ("padded to 1 MiB", &huge[..]),
        ("all zeros", &vec![0; signature.len()][..]),
        ("all ones", &vec![0xff; signature.len()][..]),
    ] {
        assert_eq!(
            verify(algorithm, key, message, bad),
            Ok(false),
            "{algorithm}: signature {what}"
        );
    }
}

fn run_rsa_cases(algorithm: Algorithm, cases: &[RsaCase]) {
    for case in cases {
        let (n, e) = rsa_public_key_der(&hex(case.key));
        let key = Key::Rsa { n: &n, e: &e };
        let message = hex(case.msg);
        let signature = hex(case.sig);
        if case.valid {
            assert_valid_and_tamper_evident(algorithm, key, &message, &signature);
        } else {
            assert_eq!(
                verify(algorithm, key, &message, &signature),
                Ok(false),
                "{algorithm}: {}",
                case.name
            );
        }
    }
}

fn run_ec_cases(algorithm: Algorithm, cases: &[EcCase]) {
    for case in cases {
        let point = hex(case.q);
        let signature = hex(case.sig);
        if case.valid {
            assert_valid_and_tamper_evident(algorithm, Key::EcPoint(&point), b"", &signature);
        } else {
            assert_eq!(
                verify(algorithm, Key::EcPoint(&point), b"", &signature),
                Ok(false),
                "{algorithm}: {}",
                case.name
            );
        }
    }
}

fn invalid_key(result: Result<bool, KeyError>) -> String {
    match result {
        Err(KeyError::InvalidKey(message)) => message,
        other => panic!("expected InvalidKey, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// RFC vectors.

#[test]
fn rfc7515_a1_hs256() {
    let secret = b64(RFC7515_A1_K);
    assert_valid_and_tamper_evident(
        Algorithm::Hs256,
        Key::Secret(&secret),
        RFC7515_A1_SIGNING_INPUT.as_bytes(),
        &b64(RFC7515_A1_SIGNATURE),
    );
}

#[test]
fn rfc7515_a2_rs256() {
    let (n, e) = rfc7515_rsa();
    assert_eq!(n.len(), 256);
    assert_valid_and_tamper_evident(
        Algorithm::Rs256,
        Key::Rsa { n: &n, e: &e },
        RFC7515_A2_SIGNING_INPUT.as_bytes(),
        &b64(RFC7515_A2_SIGNATURE),
    );
}

#[test]
fn rfc7515_a2_rs256_accepts_leading_zeros_in_n_and_e() {
    let (n, _) = rfc7515_rsa();
    let mut padded_n = vec![0, 0];
    padded_n.extend(&n);
    let padded_e = [0, 0, 0, 1, 0, 1];
    assert_eq!(
        verify(
            Algorithm::Rs256,
            Key::Rsa {
                n: &padded_n,
                e: &padded_e
            },
            RFC7515_A2_SIGNING_INPUT.as_bytes(),
            &b64(RFC7515_A2_SIGNATURE),
        ),
        Ok(true)
    );
}

#[test]
fn rfc7515_a2_signature_is_not_valid_under_other_rsa_algorithms() {
    let (n, e) = rfc7515_rsa();
    let signature = b64(RFC7515_A2_SIGNATURE);
    for algorithm in [
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
    ] {
        assert_eq!(
            verify(
                algorithm,
                Key::Rsa { n: &n, e: &e },
                RFC7515_A2_SIGNING_INPUT.as_bytes(),
                &signature
            ),
            Ok(false),
            "{algorithm}"
        );
    }
}

#[test]
fn rfc7515_a3_es256() {
    // The signature of the compact serialization is the RFC's R || S.
    let signature = b64(RFC7515_A3_SIGNATURE);
    assert_eq!(signature[..32], RFC7515_A3_R);
    assert_eq!(signature[32..], RFC7515_A3_S);

    let point = rfc7515_ec_point();
    assert_eq!(point.len(), 65);
    assert_valid_and_tamper_evident(
        Algorithm::Es256,
        Key::EcPoint(&point),
        RFC7515_A3_SIGNING_INPUT.as_bytes(),
        &signature,
    );
}

#[test]
fn rfc7515_a3_es256_rejects_the_asn1_der_form_of_the_same_signature() {
    // JWS uses the fixed r || s form; the DER SEQUENCE of the same (r, s) is malformed here.
    // r (0x0e...) needs no sign byte, s (0xc5...) does.
    let mut der = vec![0x30, 2 + 32 + 2 + 33, 0x02, 32];
    der.extend(RFC7515_A3_R);
    der.extend([0x02, 33, 0x00]);
    der.extend(RFC7515_A3_S);
    let point = rfc7515_ec_point();
    assert_eq!(
        verify(
            Algorithm::Es256,
            Key::EcPoint(&point),
            RFC7515_A3_SIGNING_INPUT.as_bytes(),
            &der
        ),
        Ok(false)
    );
}

#[test]
fn rfc8037_a4_ed25519() {
    let public_key = b64(RFC8037_X);
    assert_eq!(public_key.len(), 32);
    assert_valid_and_tamper_evident(
        Algorithm::EdDsa,
        Key::Ed25519(&public_key),
        RFC8037_A4_SIGNING_INPUT.as_bytes(),
        &b64(RFC8037_A4_SIGNATURE),
    );
}

#[test]
fn rfc4231_test_case_2_hmac_sha2() {
    for (algorithm, tag) in [
        (Algorithm::Hs256, RFC4231_TC2_SHA256),
        (Algorithm::Hs384, RFC4231_TC2_SHA384),
        (Algorithm::Hs512, RFC4231_TC2_SHA512),
    ] {
        let tag = hex(tag);
        assert_valid_and_tamper_evident(
            algorithm,
            Key::Secret(RFC4231_TC2_KEY),
            RFC4231_TC2_DATA,
            &tag,
        );
        // A truncated tag (RFC 4231 test case 5 style, 128 bits) is not accepted.
        assert_eq!(
            verify(
                algorithm,
                Key::Secret(RFC4231_TC2_KEY),
                RFC4231_TC2_DATA,
                &tag[..16]
            ),
            Ok(false),
            "{algorithm}"
        );
    }
    // Each tag is valid only for its own hash.
    let sha256_tag = hex(RFC4231_TC2_SHA256);
    let sha384_tag = hex(RFC4231_TC2_SHA384);
    for (algorithm, tag) in [
        (Algorithm::Hs384, &sha256_tag),
        (Algorithm::Hs512, &sha256_tag),
        (Algorithm::Hs256, &sha384_tag),
    ] {
        assert_eq!(
            verify(
                algorithm,
                Key::Secret(RFC4231_TC2_KEY),
                RFC4231_TC2_DATA,
                tag
            ),
            Ok(false),
            "{algorithm}"
        );
    }
    // A different key gives a different tag.
    assert_eq!(
        verify(
            Algorithm::Hs256,
            Key::Secret(b"Jeff"),
            RFC4231_TC2_DATA,
            &sha256_tag
        ),
        Ok(false)
    );
}

#[test]
fn fips180_digests() {
    assert_eq!(
        digest(DigestAlgorithm::Sha256, b"abc"),
        hex(FIPS180_ABC_SHA256)
    );
    assert_eq!(
        digest(DigestAlgorithm::Sha384, b"abc"),
        hex(FIPS180_ABC_SHA384)
    );
    assert_eq!(
        digest(DigestAlgorithm::Sha512, b"abc"),
        hex(FIPS180_ABC_SHA512)
    );
    assert_eq!(digest(DigestAlgorithm::Sha256, b""), hex(SHA256_EMPTY));
    assert_ne!(
        digest(DigestAlgorithm::Sha256, b"abd"),
        hex(FIPS180_ABC_SHA256)
    );
}

// ---------------------------------------------------------------------------------------
// ring's (NIST CAVP and edge-case) vectors.

#[test]
fn ring_rsa_pkcs1_rs256() {
    run_rsa_cases(Algorithm::Rs256, RING_RS256);
}

#[test]
fn ring_rsa_pkcs1_rs384() {
    run_rsa_cases(Algorithm::Rs384, RING_RS384);
}

#[test]
fn ring_rsa_pkcs1_rs512_4096_bit_key() {
    run_rsa_cases(Algorithm::Rs512, RING_RS512);
}

#[test]
fn ring_rsa_pss_ps256() {
    run_rsa_cases(Algorithm::Ps256, RING_PS256);
}

#[test]
fn ring_rsa_pss_ps384() {
    run_rsa_cases(Algorithm::Ps384, RING_PS384);
}

#[test]
fn ring_rsa_pss_ps512() {
    run_rsa_cases(Algorithm::Ps512, RING_PS512);
}

#[test]
fn ring_rsa_pss_signature_is_not_a_pkcs1_signature() {
    let case = &RING_PS256[0];
    let (n, e) = rsa_public_key_der(&hex(case.key));
    assert_eq!(
        verify(
            Algorithm::Rs256,
            Key::Rsa { n: &n, e: &e },
            &hex(case.msg),
            &hex(case.sig)
        ),
        Ok(false)
    );
}

#[test]
fn ring_ecdsa_es256() {
    run_ec_cases(Algorithm::Es256, RING_ES256);
}

#[test]
fn ring_ecdsa_es384() {
    run_ec_cases(Algorithm::Es384, RING_ES384);
}

// ---------------------------------------------------------------------------------------
// Key kinds.

#[test]
fn wrong_key_type() {
    let (n, e) = rfc7515_rsa();
    let point = rfc7515_ec_point();
    let ed = b64(RFC8037_X);
    let rsa = Key::Rsa { n: &n, e: &e };
    let ec = Key::EcPoint(&point);
    let ed25519 = Key::Ed25519(&ed);
    let secret = Key::Secret(b"secret");
    let all = [rsa, ec, ed25519, secret];

    let signature = [0u8; 64];
    for algorithm in Algorithm::ALL {
        let right = match algorithm {
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512 => rsa,
            Algorithm::Es256 | Algorithm::Es384 => ec,
            Algorithm::EdDsa => ed25519,
            Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => secret,
        };
        for key in all.into_iter().filter(|key| *key != right) {
            assert_eq!(
                verify(algorithm, key, b"message", &signature),
                Err(KeyError::WrongKeyType),
                "{algorithm} with {key:?}"
            );
        }
    }
}

#[test]
fn wrong_key_type_wins_over_an_invalid_key() {
    // The kind is checked first: an empty secret for RS256 is the wrong kind, not invalid.
    assert_eq!(
        verify(Algorithm::Rs256, Key::Secret(b""), b"m", b""),
        Err(KeyError::WrongKeyType)
    );
    assert_eq!(
        verify(Algorithm::Hs256, Key::Rsa { n: &[], e: &[] }, b"m", b""),
        Err(KeyError::WrongKeyType)
    );
    assert_eq!(
        verify(Algorithm::EdDsa, Key::EcPoint(&[]), b"m", b""),
        Err(KeyError::WrongKeyType)
    );
    assert_eq!(
        verify(Algorithm::Es256, Key::Ed25519(&[]), b"m", b""),
        Err(KeyError::WrongKeyType)
    );
}

// ---------------------------------------------------------------------------------------
// RSA keys.

#[test]
fn rsa_1024_bit_modulus_is_invalid() {
    let (n, e) = rsa_public_key_der(&hex(NIST_PKCS1_1024_KEY));
    for algorithm in [Algorithm::Rs256, Algorithm::Ps512] {
        assert_eq!(
            invalid_key(verify(algorithm, Key::Rsa { n: &n, e: &e }, b"", &[1; 128])),
            "the RSA modulus is 1024 bits; allowed: 2048 to 8192 bits"
        );
    }
}

#[test]
fn rsa_16384_bit_modulus_is_invalid() {
    let n = vec![0xff; 2048];
    assert_eq!(
        invalid_key(verify(
            Algorithm::Rs256,
            Key::Rsa {
                n: &n,
                e: &[1, 0, 1]
            },
            b"",
            &[1; 2048]
        )),
        "the RSA modulus is 16384 bits; allowed: 2048 to 8192 bits"
    );
}

#[test]
fn rsa_modulus_size_counts_bits_not_bytes() {
    // 8193 bits (like ring's "one bit larger than the maximum" case): invalid.
    let mut n = vec![0xff; 1025];
    n[0] = 0x01;
    assert_eq!(
        invalid_key(verify(
            Algorithm::Rs256,
            Key::Rsa {
                n: &n,
                e: &[1, 0, 1]
            },
            b"",
            &[1; 1025]
        )),
        "the RSA modulus is 8193 bits; allowed: 2048 to 8192 bits"
    );
    // 2040 bits in 255 bytes, and 2047 bits in 256 bytes: invalid.
    for (len, top, bits) in [(255, 0xff, 2040), (256, 0x40, 2047)] {
        let mut n = vec![0xff; len];
        n[0] = top;
        assert_eq!(
            invalid_key(verify(
                Algorithm::Rs256,
                Key::Rsa {
                    n: &n,
                    e: &[1, 0, 1]
                },
                b"",
                &[1; 256]
            )),
            format!("the RSA modulus is {bits} bits; allowed: 2048 to 8192 bits")
        );
    }
    // A 2048-bit modulus behind a leading zero byte is a 2048-bit modulus.
    let (n, e) = rfc7515_rsa();
    let mut padded = vec![0];
    padded.extend(&n);
    assert_eq!(
        verify(
            Algorithm::Rs256,
            Key::Rsa { n: &padded, e: &e },
            b"",
            &[1; 256]
        ),
        Ok(false)
    );
}

#[test]
fn rsa_empty_or_even_modulus_is_invalid() {
    assert_eq!(
        invalid_key(verify(
            Algorithm::Rs256,
            Key::Rsa {
                n: &[0, 0],
                e: &[3]
            },
            b"",
            b""
        )),
        "the RSA modulus is 0 bits; allowed: 2048 to 8192 bits"
    );
    let (mut n, e) = rfc7515_rsa();
    *n.last_mut().unwrap() &= 0xfe;
    assert_eq!(
        invalid_key(verify(
            Algorithm::Ps256,
            Key::Rsa { n: &n, e: &e },
            b"",
            b""
        )),
        "the RSA modulus is even"
    );
}

#[test]
fn rsa_exponent_limits() {
    let (n, _) = rfc7515_rsa();
    let check = |e: &[u8]| verify(Algorithm::Rs256, Key::Rsa { n: &n, e }, b"", &[1; 256]);
    // The exponent ring's edge cases tamper to 1 (a trivially forgeable key).
    assert_eq!(
        invalid_key(check(&[1])),
        "the RSA public exponent is 1; it must be at least 3"
    );
    assert_eq!(
        invalid_key(check(&[])),
        "the RSA public exponent is 0; it must be at least 3"
    );
    assert_eq!(
        invalid_key(check(&[0, 0])),
        "the RSA public exponent is 0; it must be at least 3"
    );
    assert_eq!(
        invalid_key(check(&[1, 0, 0])),
        "the RSA public exponent is 65536; it must be odd"
    );
    assert_eq!(
        invalid_key(check(&[2, 0, 0, 0, 1])),
        "the RSA public exponent is 34 bits; allowed: at most 33 bits (up to 8589934591)"
    );
    assert_eq!(
        invalid_key(check(&[0xff; 300])),
        "the RSA public exponent is 2400 bits; allowed: at most 33 bits (up to 8589934591)"
    );
    // 3, 65537 and 2^33 - 1 pass the key checks (and the signature then fails).
    for e in [&[3][..], &[1, 0, 1], &[1, 0xff, 0xff, 0xff, 0xff]] {
        assert_eq!(check(e), Ok(false), "{e:?}");
    }
}

#[test]
fn ring_rsa_34_bit_exponent_is_invalid() {
    let (n, e) = rsa_public_key_der(&hex(RING_PKCS1_E_34_BITS_KEY));
    assert_eq!(e, [2, 0, 0, 0, 1]);
    assert_eq!(
        invalid_key(verify(
            Algorithm::Rs256,
            Key::Rsa { n: &n, e: &e },
            b"",
            &[1; 256]
        )),
        "the RSA public exponent is 34 bits; allowed: at most 33 bits (up to 8589934591)"
    );
}

#[test]
fn rsa_signature_not_below_the_modulus_is_false() {
    // A signature of the right length but >= n (here: n itself, and all ones) is malformed.
    let (n, e) = rfc7515_rsa();
    let key = Key::Rsa { n: &n, e: &e };
    let message = RFC7515_A2_SIGNING_INPUT.as_bytes();
    assert_eq!(verify(Algorithm::Rs256, key, message, &n), Ok(false));
    assert_eq!(
        verify(Algorithm::Rs256, key, message, &[0xff; 256]),
        Ok(false)
    );
}

// ---------------------------------------------------------------------------------------
// EC points.

#[test]
fn ec_point_of_the_wrong_length_is_invalid() {
    let point = rfc7515_ec_point();
    let signature = b64(RFC7515_A3_SIGNATURE);
    let message = RFC7515_A3_SIGNING_INPUT.as_bytes();

    // x || y without the 0x04.
    assert_eq!(
        invalid_key(verify(
            Algorithm::Es256,
            Key::EcPoint(&point[1..]),
            message,
            &signature
        )),
        "ES256 needs an uncompressed P-256 point (0x04 || x || y) of 65 bytes, got 64 bytes"
    );
    // Compressed (0x02/0x03 || x).
    let mut compressed = vec![0x02 | (point[64] & 1)];
    compressed.extend(&point[1..33]);
    assert_eq!(
        invalid_key(verify(
            Algorithm::Es256,
            Key::EcPoint(&compressed),
            message,
            &signature
        )),
        "ES256 needs an uncompressed P-256 point (0x04 || x || y) of 65 bytes, got 33 bytes"
    );
    assert_eq!(
        invalid_key(verify(
            Algorithm::Es256,
            Key::EcPoint(&[]),
            message,
            &signature
        )),
        "ES256 needs an uncompressed P-256 point (0x04 || x || y) of 65 bytes, got 0 bytes"
    );
    // A P-256 point for ES384, and a P-384 point for ES256.
    assert_eq!(
        invalid_key(verify(
            Algorithm::Es384,
            Key::EcPoint(&point),
            message,
            &[0; 96]
        )),
        "ES384 needs an uncompressed P-384 point (0x04 || x || y) of 97 bytes, got 65 bytes"
    );
    let p384 = hex(RING_ES384[0].q);
    assert_eq!(
        invalid_key(verify(
            Algorithm::Es256,
            Key::EcPoint(&p384),
            message,
            &signature
        )),
        "ES256 needs an uncompressed P-256 point (0x04 || x || y) of 65 bytes, got 97 bytes"
    );
}

#[test]
fn ec_point_without_the_uncompressed_prefix_is_invalid() {
    let point = rfc7515_ec_point();
    for prefix in [0x00, 0x02, 0x03, 0x06] {
        let mut bad = point.clone();
        bad[0] = prefix;
        assert_eq!(
            invalid_key(verify(
                Algorithm::Es256,
                Key::EcPoint(&bad),
                RFC7515_A3_SIGNING_INPUT.as_bytes(),
                &b64(RFC7515_A3_SIGNATURE)
            )),
            format!(
                "ES256 needs an uncompressed P-256 point, starting with 0x04; this one starts with {prefix:#04x}"
            )
        );
    }
    let mut bad = hex(RING_ES384[0].q);
    bad[0] = 0x02;
    assert_eq!(
        invalid_key(verify(Algorithm::Es384, Key::EcPoint(&bad), b"", &[0; 96])),
        "ES384 needs an uncompressed P-384 point, starting with 0x04; this one starts with 0x02"
    );
}

#[test]
fn ec_point_off_the_curve_is_false_as_documented() {
    // ring validates the point during verification but reports it like a bad signature:
    // documented as Ok(false), never Ok(true).
    let mut point = rfc7515_ec_point();
    point[64] ^= 1;
    assert_eq!(
        verify(
            Algorithm::Es256,
            Key::EcPoint(&point),
            RFC7515_A3_SIGNING_INPUT.as_bytes(),
            &b64(RFC7515_A3_SIGNATURE)
        ),
        Ok(false)
    );
    // Coordinates >= p (all ones) are not a point either.
    let mut point = vec![0x04];
    point.extend([0xff; 64]);
    assert_eq!(
        verify(
            Algorithm::Es256,
            Key::EcPoint(&point),
            RFC7515_A3_SIGNING_INPUT.as_bytes(),
            &b64(RFC7515_A3_SIGNATURE)
        ),
        Ok(false)
    );
}

// ---------------------------------------------------------------------------------------
// Ed25519 keys.

#[test]
fn ed25519_key_of_the_wrong_length_is_invalid() {
    let key = b64(RFC8037_X);
    let signature = b64(RFC8037_A4_SIGNATURE);
    let message = RFC8037_A4_SIGNING_INPUT.as_bytes();
    let mut long = key.clone();
    long.push(0);
    for (bad, len) in [(&key[..31], 31), (&long[..], 33), (&[][..], 0)] {
        assert_eq!(
            invalid_key(verify(
                Algorithm::EdDsa,
                Key::Ed25519(bad),
                message,
                &signature
            )),
            format!("an Ed25519 public key is 32 bytes, got {len}")
        );
    }
}

// ---------------------------------------------------------------------------------------
// HMAC secrets.

#[test]
fn empty_hmac_secret_is_invalid() {
    for algorithm in [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512] {
        assert_eq!(
            verify(algorithm, Key::Secret(b""), b"message", &[0; 64]),
            Err(KeyError::InvalidKey("empty secret".to_owned())),
            "{algorithm}"
        );
    }
}
