//! Verification by the host's crypto (`weft_sdk::crypto`, which natively runs the proxy's ring
//! code in process): the fixture keys, bad signatures, wrong key types, RSA key sizes, and
//! every algorithm the filter accepts.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_signature, KeyPair as _};
use serde_json::{Value, json};
use weft_sdk::crypto::{self, Algorithm as HostAlgorithm, KeyError, VerifyingKey};

use super::sign::{self, AUDIENCE, ISSUER, Key};
use crate::jwt::{Algorithm, Rejection, Verifier};

const NOW: u64 = 1_767_225_600;
const RSA1_PEM: &str = include_str!("../../../../tests/fixtures/authz/rsa1.pem");

fn verifier(jwks: Value) -> Verifier {
    try_verifier(jwks).expect("valid jwt config")
}

fn try_verifier(jwks: Value) -> Result<Verifier, String> {
    Verifier::from_json(&json!({"jwks": jwks, "issuers": [ISSUER], "audiences": [AUDIENCE]}))
}

fn jwk(kid: &str) -> Value {
    sign::jwks_with(&[kid])["keys"][0].clone()
}

fn member(jwk: &Value, name: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(jwk[name].as_str().expect("string member"))
        .expect("base64url")
}

/// `(signing input, signature)` of a compact JWS.
fn split(token: &str) -> (&[u8], Vec<u8>) {
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    (
        input.as_bytes(),
        URL_SAFE_NO_PAD.decode(signature).expect("base64url"),
    )
}

/// `token` with bit `bit` of its signature's byte `byte` flipped.
fn flip_signature_bit(token: &str, byte: usize, bit: u8) -> String {
    let (input, mut signature) = split(token);
    signature[byte] ^= 1 << bit;
    format!(
        "{}.{}",
        String::from_utf8_lossy(input),
        sign::b64(signature)
    )
}

#[test]
fn fixture_tokens_verify_through_the_host_crypto() {
    // Directly: the fixtures' signatures, under the JWKs' key material.
    let rsa = jwk("rsa-1");
    let (n, e) = (member(&rsa, "n"), member(&rsa, "e"));
    let token = sign::sign(Key::Rsa1, &sign::claims(NOW));
    let (input, signature) = split(&token);
    assert_eq!(
        crypto::verify(
            HostAlgorithm::Rs256,
            VerifyingKey::Rsa { n: &n, e: &e },
            input,
            &signature
        ),
        Ok(true)
    );
    let ec = jwk("ec-1");
    let point = [&[0x04], &member(&ec, "x")[..], &member(&ec, "y")[..]].concat();
    let token = sign::sign(Key::Ec1, &sign::claims(NOW));
    let (input, signature) = split(&token);
    assert_eq!(
        crypto::verify(
            HostAlgorithm::Es256,
            VerifyingKey::EcPoint(&point),
            input,
            &signature
        ),
        Ok(true)
    );

    // Through the filter's verifier, which calls it.
    let verifier = verifier(sign::jwks());
    for key in [Key::Rsa1, Key::Rsa2, Key::Ec1] {
        let token = sign::sign(key, &sign::claims(NOW));
        let claims = verifier
            .verify(&token, NOW)
            .unwrap_or_else(|err| panic!("{key:?}: {err}"));
        assert_eq!(claims.get("sub"), Some(&json!("user-7")), "{key:?}");
    }
}

#[test]
fn an_invalid_signature_is_rejected() {
    let verifier = verifier(sign::jwks());
    for key in [Key::Rsa1, Key::Ec1, Key::Hs1] {
        let token = sign::sign(key, &sign::claims(NOW));
        let len = split(&token).1.len();
        for (byte, bit) in [(0, 0), (len / 2, 5), (len - 1, 7)] {
            assert_eq!(
                verifier.verify(&flip_signature_bit(&token, byte, bit), NOW),
                Err(Rejection::BadSignature),
                "{key:?}: byte {byte} bit {bit}"
            );
        }
        let (input, signature) = split(&token);
        let input = String::from_utf8_lossy(input);
        for bad in [
            signature[..len - 1].to_vec(),
            [&signature[..], &[0]].concat(),
            vec![0; len],
        ] {
            let forged = format!("{input}.{}", sign::b64(bad));
            assert_eq!(
                verifier.verify(&forged, NOW),
                Err(Rejection::BadSignature),
                "{key:?}"
            );
        }
        // Signed by another key of the same algorithm, under this key's name.
        let other = match key {
            Key::Rsa1 => Key::Rsa2,
            _ => continue,
        };
        let header = json!({"alg": key.alg(), "kid": key.kid()});
        let token = sign::sign_with_header(other, &header, &sign::claims(NOW));
        assert_eq!(verifier.verify(&token, NOW), Err(Rejection::BadSignature));
    }
}

#[test]
fn a_key_of_the_wrong_type_is_rejected() {
    // An RS256 token naming the EC key: no RS256 key has that kid.
    let all = verifier(sign::jwks());
    let header = json!({"alg": "RS256", "kid": "ec-1"});
    let token = sign::sign_with_header(Key::Rsa1, &header, &sign::claims(NOW));
    assert_eq!(all.verify(&token, NOW), Err(Rejection::UnknownKey));
    // With only the EC key configured, RS256 is not even an allowed algorithm...
    let ec_only = verifier(sign::jwks_with(&["ec-1"]));
    assert_eq!(ec_only.verify(&token, NOW), Err(Rejection::BadAlgorithm));
    // ... and cannot be made one: there is no key for it.
    let err = Verifier::from_json(&json!({
        "jwks": sign::jwks_with(&["ec-1"]), "issuers": [ISSUER], "algorithms": ["RS256"],
    }))
    .expect_err("no RS256 key");
    assert_eq!(err, "jwt.algorithms[0]: no key in jwt.jwks is for RS256");
    // An EC JWK declaring RS256 is refused when the configuration is loaded.
    let mut ec = jwk("ec-1");
    ec["alg"] = json!("RS256");
    let err = try_verifier(json!({"keys": [ec]})).expect_err("EC key for RS256");
    assert_eq!(
        err,
        "jwt.jwks.keys[0].alg: `RS256` is not supported for a `EC P-256` key; supported: ES256"
    );
    // And the host itself refuses the pairing.
    let point = [
        &[0x04],
        &member(&jwk("ec-1"), "x")[..],
        &member(&jwk("ec-1"), "y")[..],
    ]
    .concat();
    let (input, signature) = split(&token);
    assert_eq!(
        crypto::verify(
            HostAlgorithm::Rs256,
            VerifyingKey::EcPoint(&point),
            input,
            &signature
        ),
        Err(KeyError::WrongKeyType)
    );
}

#[test]
fn rsa_keys_outside_2048_to_4096_bits_are_rejected_at_config() {
    let rsa = jwk("rsa-1");
    let n = member(&rsa, "n");
    assert_eq!(n[0] & 0x80, 0x80, "the fixture modulus has its top bit set");
    for (modulus, message) in [
        (
            n.repeat(8),
            "jwt.jwks.keys[0].n: RSA keys may have at most 4096 bits; this one has 16384",
        ),
        (
            n[..128].to_vec(),
            "jwt.jwks.keys[0].n: RSA keys must have at least 2048 bits; this one has 1024",
        ),
        (
            [&n.repeat(2)[..], &[1]].concat(),
            "jwt.jwks.keys[0].n: RSA keys may have at most 4096 bits; this one has 4104",
        ),
    ] {
        let mut key = rsa.clone();
        key["n"] = json!(sign::b64(&modulus));
        let err = try_verifier(json!({"keys": [key]})).expect_err(message);
        assert_eq!(err, message);
    }
    // Leading zero bytes do not count; 4096 bits is the largest size taken.
    for modulus in [[&[0, 0][..], &n].concat(), n.repeat(2)] {
        let mut key = rsa.clone();
        key["n"] = json!(sign::b64(modulus));
        try_verifier(json!({"keys": [key]})).expect("a usable size");
    }
    // An even exponent.
    let mut key = rsa;
    key["e"] = json!(sign::b64([1, 0, 0]));
    let err = try_verifier(json!({"keys": [key]})).expect_err("even e");
    assert_eq!(
        err,
        "jwt.jwks.keys[0].e: the exponent must be odd, at least 3 and below 2^32"
    );
}

#[test]
fn unusable_ec_and_hmac_keys_are_rejected_at_config() {
    let ec = jwk("ec-1");
    let mut swapped = ec.clone();
    swapped["x"] = ec["y"].clone();
    swapped["y"] = ec["x"].clone();
    let mut p384 = ec.clone();
    p384["crv"] = json!("P-384");
    let mut es384_on_p256 = ec.clone();
    es384_on_p256["alg"] = json!("ES384");
    let hs512 = json!({"kty": "oct", "alg": "HS512", "k": sign::b64([7; 63])});
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": sign::b64([9; 31])});
    let x25519 = json!({"kty": "OKP", "crv": "X25519", "x": sign::b64([9; 32])});
    for (key, message) in [
        (
            swapped,
            "jwt.jwks.keys[0]: x and y are not a point on P-256",
        ),
        (
            p384,
            "jwt.jwks.keys[0].alg: `ES256` is not supported for a `EC P-384` key; supported: ES384",
        ),
        (
            es384_on_p256,
            "jwt.jwks.keys[0].alg: `ES384` is not supported for a `EC P-256` key; supported: ES256",
        ),
        (
            hs512,
            "jwt.jwks.keys[0].k: HS512 secrets must be at least 64 bytes; this one has 63",
        ),
        (
            okp,
            "jwt.jwks.keys[0].x: an Ed25519 public key is 32 bytes; this one has 31",
        ),
        (
            x25519,
            "jwt.jwks.keys[0].crv: unsupported curve `X25519`; supported: Ed25519",
        ),
    ] {
        let err = try_verifier(json!({"keys": [key]})).expect_err(message);
        assert_eq!(err, message);
    }
}

// ---------------------------------------------------------------------------------------
// The algorithms beyond RS256/ES256/HS256, signed here with ring (the host's library, as a
// dev-dependency) and the fixture RSA key.

/// Signs a JWS signing input: the raw signature.
type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A signer for one algorithm, with the public JWK that verifies it.
struct Signer {
    alg: Algorithm,
    jwk: Value,
    sign: SignFn,
}

fn pkcs8(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).expect("PEM body")
}

fn signers() -> Vec<Signer> {
    let rng = SystemRandom::new();
    let mut signers = Vec::new();

    let rsa = std::sync::Arc::new(
        ring_signature::RsaKeyPair::from_pkcs8(&pkcs8(RSA1_PEM)).expect("fixture RSA key"),
    );
    let rsa_jwk = jwk("rsa-1");
    for (alg, padding) in [
        (
            Algorithm::Rs384,
            &ring_signature::RSA_PKCS1_SHA384 as &dyn ring_signature::RsaEncoding,
        ),
        (
            Algorithm::Rs512,
            &ring_signature::RSA_PKCS1_SHA512 as &dyn ring_signature::RsaEncoding,
        ),
        (
            Algorithm::Ps256,
            &ring_signature::RSA_PSS_SHA256 as &dyn ring_signature::RsaEncoding,
        ),
        (
            Algorithm::Ps384,
            &ring_signature::RSA_PSS_SHA384 as &dyn ring_signature::RsaEncoding,
        ),
        (
            Algorithm::Ps512,
            &ring_signature::RSA_PSS_SHA512 as &dyn ring_signature::RsaEncoding,
        ),
    ] {
        let (rsa, rng) = (rsa.clone(), rng.clone());
        let mut jwk = rsa_jwk.clone();
        jwk["alg"] = json!(alg.as_str());
        jwk["kid"] = json!(format!("rsa-1-{alg}"));
        signers.push(Signer {
            alg,
            jwk,
            sign: Box::new(move |input| {
                let mut signature = vec![0; rsa.public().modulus_len()];
                rsa.sign(padding, &rng, input, &mut signature)
                    .expect("RSA signing");
                signature
            }),
        });
    }

    let es384 = &ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING;
    let document = ring_signature::EcdsaKeyPair::generate_pkcs8(es384, &rng).expect("P-384 key");
    let ec = ring_signature::EcdsaKeyPair::from_pkcs8(es384, document.as_ref(), &rng)
        .expect("P-384 key");
    let point = ec.public_key().as_ref().to_vec();
    signers.push(Signer {
        alg: Algorithm::Es384,
        jwk: json!({
            "kty": "EC", "crv": "P-384", "kid": "ec-384",
            "x": sign::b64(&point[1..49]), "y": sign::b64(&point[49..]),
        }),
        sign: Box::new({
            let rng = rng.clone();
            move |input| {
                ec.sign(&rng, input)
                    .expect("ECDSA signing")
                    .as_ref()
                    .to_vec()
            }
        }),
    });

    let document = ring_signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
    let ed = ring_signature::Ed25519KeyPair::from_pkcs8(document.as_ref()).expect("Ed25519 key");
    signers.push(Signer {
        alg: Algorithm::EdDsa,
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
            "x": sign::b64(ed.public_key().as_ref()),
        }),
        sign: Box::new(move |input| ed.sign(input).as_ref().to_vec()),
    });

    for (alg, hmac, len) in [
        (Algorithm::Hs384, ring::hmac::HMAC_SHA384, 48),
        (Algorithm::Hs512, ring::hmac::HMAC_SHA512, 64),
    ] {
        let secret: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let key = ring::hmac::Key::new(hmac, &secret);
        signers.push(Signer {
            alg,
            jwk: json!({"kty": "oct", "alg": alg.as_str(), "kid": format!("hs-{alg}"), "k": sign::b64(&secret)}),
            sign: Box::new(move |input| ring::hmac::sign(&key, input).as_ref().to_vec()),
        });
    }
    signers
}

fn token(signer: &Signer, header: &Value) -> String {
    let input = format!(
        "{}.{}",
        sign::b64(header.to_string()),
        sign::b64(sign::claims(NOW).to_string())
    );
    let signature = (signer.sign)(input.as_bytes());
    format!("{input}.{}", sign::b64(signature))
}

#[test]
fn every_other_algorithm_verifies_with_its_own_key_only() {
    let signers = signers();
    let mut keys: Vec<Value> = signers.iter().map(|s| s.jwk.clone()).collect();
    keys.extend(
        sign::jwks()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .cloned(),
    );
    let verifier = verifier(json!({"keys": keys}));
    assert_eq!(
        verifier.algorithms().len(),
        Algorithm::ALL.len(),
        "{:?}",
        verifier.algorithms()
    );
    for signer in &signers {
        let alg = signer.alg;
        let kid = signer.jwk["kid"].as_str().expect("kid");
        let valid = token(signer, &json!({"alg": alg.as_str(), "kid": kid}));
        assert!(verifier.verify(&valid, NOW).is_ok(), "{alg}");
        // Without a kid: every key of the algorithm is tried.
        let anonymous = token(signer, &json!({"alg": alg.as_str()}));
        assert!(verifier.verify(&anonymous, NOW).is_ok(), "{alg}");
        // A flipped bit.
        let len = split(&valid).1.len();
        assert_eq!(
            verifier.verify(&flip_signature_bit(&valid, len / 3, 1), NOW),
            Err(Rejection::BadSignature),
            "{alg}"
        );
        // The same signature claimed for another algorithm of the same key type finds no key
        // of that name, or does not verify.
        for other in Algorithm::ALL.into_iter().filter(|other| *other != alg) {
            let confused = token(signer, &json!({"alg": other.as_str(), "kid": kid}));
            assert_eq!(
                verifier.verify(&confused, NOW),
                Err(Rejection::UnknownKey),
                "{alg} key, {other} header"
            );
        }
    }

    // An RSA key without `alg` is for RS256 only: a PS256 token naming it finds no key.
    let ps256 = &signers[2];
    assert_eq!(ps256.alg, Algorithm::Ps256);
    let token = token(ps256, &json!({"alg": "PS256", "kid": "rsa-1"}));
    let mut plain = jwk("rsa-1");
    plain.as_object_mut().expect("object").remove("alg");
    let keys = json!({"keys": [plain, ps256.jwk.clone()]});
    assert_eq!(
        try_verifier(keys).expect("valid").verify(&token, NOW),
        Err(Rejection::UnknownKey)
    );
}

#[test]
fn the_rfc_8037_ed25519_example_verifies() {
    // RFC 8037 A.2 (public key) and A.4 (JWS). The payload is text, not claims: the signature
    // verifies, then the payload is malformed.
    let key =
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let verifier = verifier(json!({"keys": [key]}));
    let token = concat!(
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.",
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );
    assert_eq!(verifier.verify(token, NOW), Err(Rejection::Malformed));
    assert_eq!(
        verifier.verify(&flip_signature_bit(token, 10, 0), NOW),
        Err(Rejection::BadSignature)
    );
}
