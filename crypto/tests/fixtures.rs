//! The repository's authz fixture keys (`tests/fixtures/authz`): a signature made with each
//! private key (by ring, at test time) verifies with the public half published in
//! `jwks.json`, and not with another key. This is the path a JWT signed by those fixtures
//! takes through the authz filter.

#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use util::{b64, pem};
use weft_crypto::{Algorithm, Key, verify};

const JWKS: &str = include_str!("../../tests/fixtures/authz/jwks.json");
const RSA1_PEM: &str = include_str!("../../tests/fixtures/authz/rsa1.pem");
const RSA2_PEM: &str = include_str!("../../tests/fixtures/authz/rsa2.pem");
const EC1_PEM: &str = include_str!("../../tests/fixtures/authz/ec1.pem");
const HMAC1_SECRET: &[u8] = include_bytes!("../../tests/fixtures/authz/hmac1.secret");

/// A JWS signing input, as the authz tests build them (header and claims base64url).
const SIGNING_INPUT: &[u8] =
    b"eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0In0";

/// The base64url-decoded string member `member` of the JWK whose `kid` is `kid`.
fn jwk_member(kid: &str, member: &str) -> Vec<u8> {
    let at = JWKS.find(&format!("\"kid\": \"{kid}\"")).unwrap();
    let start = JWKS[..at].rfind('{').unwrap();
    let end = at + JWKS[at..].find('}').unwrap();
    let object = &JWKS[start..end];
    let name = format!("\"{member}\": \"");
    let value_start = object.find(&name).unwrap() + name.len();
    let value_len = object[value_start..].find('"').unwrap();
    b64(&object[value_start..value_start + value_len])
}

fn rsa_sign(pem_text: &str) -> Vec<u8> {
    let key_pair = RsaKeyPair::from_pkcs8(&pem(pem_text)).unwrap();
    let mut signature = vec![0; key_pair.public().modulus_len()];
    key_pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            SIGNING_INPUT,
            &mut signature,
        )
        .unwrap();
    signature
}

#[test]
fn rsa_fixtures_rs256() {
    let (n1, e1) = (jwk_member("rsa-1", "n"), jwk_member("rsa-1", "e"));
    let (n2, e2) = (jwk_member("rsa-2", "n"), jwk_member("rsa-2", "e"));
    let rsa1 = Key::Rsa { n: &n1, e: &e1 };
    let rsa2 = Key::Rsa { n: &n2, e: &e2 };
    let by_rsa1 = rsa_sign(RSA1_PEM);
    let by_rsa2 = rsa_sign(RSA2_PEM);

    assert_eq!(
        verify(Algorithm::Rs256, rsa1, SIGNING_INPUT, &by_rsa1),
        Ok(true)
    );
    assert_eq!(
        verify(Algorithm::Rs256, rsa2, SIGNING_INPUT, &by_rsa2),
        Ok(true)
    );
    assert_eq!(
        verify(Algorithm::Rs256, rsa2, SIGNING_INPUT, &by_rsa1),
        Ok(false)
    );
    assert_eq!(
        verify(Algorithm::Rs256, rsa1, SIGNING_INPUT, &by_rsa2),
        Ok(false)
    );
    assert_eq!(
        verify(Algorithm::Rs256, rsa1, b"another message", &by_rsa1),
        Ok(false)
    );
}

#[test]
fn ec_fixture_es256() {
    let rng = SystemRandom::new();
    let key_pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pem(EC1_PEM), &rng).unwrap();
    let signature = key_pair.sign(&rng, SIGNING_INPUT).unwrap();

    let mut point = vec![0x04];
    point.extend(jwk_member("ec-1", "x"));
    point.extend(jwk_member("ec-1", "y"));
    assert_eq!(
        verify(
            Algorithm::Es256,
            Key::EcPoint(&point),
            SIGNING_INPUT,
            signature.as_ref()
        ),
        Ok(true)
    );
    assert_eq!(
        verify(
            Algorithm::Es256,
            Key::EcPoint(&point),
            b"another message",
            signature.as_ref()
        ),
        Ok(false)
    );
}

#[test]
fn hmac_fixture_hs256() {
    // The JWK `k` is the 64 ASCII bytes of `hmac1.secret`.
    let secret = jwk_member("hs-1", "k");
    assert_eq!(secret, HMAC1_SECRET);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC1_SECRET),
        SIGNING_INPUT,
    );
    assert_eq!(
        verify(
            Algorithm::Hs256,
            Key::Secret(&secret),
            SIGNING_INPUT,
            tag.as_ref()
        ),
        Ok(true)
    );
    assert_eq!(
        verify(
            Algorithm::Hs256,
            Key::Secret(&secret[1..]),
            SIGNING_INPUT,
            tag.as_ref()
        ),
        Ok(false)
    );
}
