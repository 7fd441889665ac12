//! The verifier and the JWKS reader.

use serde_json::{Value, json};

use super::sign::{self, AUDIENCE, ISSUER, Key};
use crate::jwt::{Rejection, Verifier};

const NOW: u64 = 1_767_225_600;

fn verifier(extra: Value) -> Verifier {
    try_verifier(extra).expect("valid jwt config")
}

fn try_verifier(extra: Value) -> Result<Verifier, String> {
    let mut config = json!({"jwks": sign::jwks(), "issuers": [ISSUER], "audiences": [AUDIENCE]});
    for (k, v) in extra.as_object().expect("object").clone() {
        config[k] = v;
    }
    Verifier::from_json(&config)
}

#[test]
fn every_algorithm_verifies() {
    let verifier = verifier(json!({}));
    for key in [Key::Rsa1, Key::Rsa2, Key::Ec1, Key::Hs1] {
        let token = sign::sign(key, &sign::claims(NOW));
        let claims = verifier
            .verify(&token, NOW)
            .unwrap_or_else(|err| panic!("{key:?}: {err}"));
        assert_eq!(claims.get("sub"), Some(&json!("user-7")), "{key:?}");
        assert_eq!(claims.get("org.name"), Some(&json!("acme")), "dotted path");
        assert_eq!(claims.exp(), Some(NOW + 3600));
    }
}

#[test]
fn kid_selects_the_key() {
    let verifier = verifier(json!({}));
    // Signed by rsa-2 but naming rsa-1: only rsa-1 is tried.
    let header = json!({"alg": "RS256", "kid": "rsa-1"});
    let token = sign::sign_with_header(Key::Rsa2, &header, &sign::claims(NOW));
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::BadSignature));
    // Naming a key that does not exist.
    let header = json!({"alg": "RS256", "kid": "rsa-9"});
    let token = sign::sign_with_header(Key::Rsa2, &header, &sign::claims(NOW));
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::UnknownKey));
    // Naming none: every RS256 key is tried.
    let header = json!({"alg": "RS256"});
    let token = sign::sign_with_header(Key::Rsa2, &header, &sign::claims(NOW));
    assert!(verifier.verify(&token, NOW).is_ok());
}

#[test]
fn keys_without_kid_stand_in_for_unknown_kids() {
    let mut jwks = sign::jwks_with(&["rsa-1"]);
    jwks["keys"][0]
        .as_object_mut()
        .expect("key object")
        .remove("kid");
    let verifier = try_verifier(json!({"jwks": jwks})).expect("valid");
    let header = json!({"alg": "RS256", "kid": "rotated-name"});
    let token = sign::sign_with_header(Key::Rsa1, &header, &sign::claims(NOW));
    assert!(verifier.verify(&token, NOW).is_ok());
}

#[test]
fn the_algorithm_must_be_the_keys_and_allowed() {
    let verifier = verifier(json!({}));
    // alg none, unsigned.
    let claims = sign::claims(NOW);
    let none = format!(
        "{}.{}.",
        sign::b64(json!({"alg": "none"}).to_string()),
        sign::b64(claims.to_string())
    );
    assert_eq!(verifier.verify(&none, NOW), Err(Rejection::BadAlgorithm));
    for alg in ["none", "None", "HS512", "PS256", "rs256", ""] {
        let header = json!({"alg": alg, "kid": "hs-1"});
        let token = sign::sign_with_header(Key::Hs1, &header, &claims);
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(Rejection::BadAlgorithm),
            "{alg}"
        );
    }
    // Key confusion: HS256 naming the RSA key (its public modulus as the HMAC secret) finds
    // no HS256 key of that name.
    let header = json!({"alg": "HS256", "kid": "rsa-1"});
    let token = sign::sign_with_header(Key::Hs1, &header, &claims);
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::UnknownKey));
    // ES256 header over an RSA signature.
    let header = json!({"alg": "ES256", "kid": "ec-1"});
    let token = sign::sign_with_header(Key::Rsa1, &header, &claims);
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::BadSignature));

    // Only RS256 configured: a valid HS256 token is refused.
    let rs_only = verifier_with_algorithms(&["RS256"]);
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(rs_only.verify(&token, NOW), Err(Rejection::BadAlgorithm));
    assert!(rs_only.verify(&sign::sign(Key::Rsa1, &claims), NOW).is_ok());
}

fn verifier_with_algorithms(algs: &[&str]) -> Verifier {
    verifier(json!({"algorithms": algs}))
}

#[test]
fn tampering_breaks_the_signature() {
    let verifier = verifier(json!({}));
    for key in [Key::Rsa1, Key::Ec1, Key::Hs1] {
        let token = sign::sign(key, &sign::claims(NOW));
        let (head, signature) = token.rsplit_once('.').expect("three segments");
        let (header, _) = head.split_once('.').expect("three segments");
        let mut forged = sign::claims(NOW);
        forged["sub"] = json!("admin");
        let swapped = format!("{header}.{}.{signature}", sign::b64(forged.to_string()));
        assert_eq!(
            verifier.verify(&swapped, NOW),
            Err(Rejection::BadSignature),
            "{key:?}"
        );
        // Last signature character changed: either undecodable or another signature.
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'Q' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        assert!(verifier.verify(&flipped, NOW).is_err(), "{key:?}");
        // No signature at all.
        assert!(
            verifier.verify(&format!("{head}."), NOW).is_err(),
            "{key:?}"
        );
    }
}

#[test]
fn expiry_and_not_before_allow_the_skew() {
    let verifier = verifier(json!({"clock_skew": "30s"}));
    let mut claims = sign::claims(NOW);
    claims["exp"] = json!(NOW + 100);
    claims["nbf"] = json!(NOW + 50);
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::NotYetValid));
    assert!(verifier.verify(&token, NOW + 20).is_ok(), "nbf within skew");
    assert!(
        verifier.verify(&token, NOW + 129).is_ok(),
        "exp within skew"
    );
    assert_eq!(verifier.verify(&token, NOW + 130), Err(Rejection::Expired));

    // Fractional and negative dates.
    claims["exp"] = json!(1.5e9);
    claims.as_object_mut().expect("object").remove("nbf");
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::Expired));
    claims["exp"] = json!(-1);
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::Expired));
    claims["exp"] = json!("tomorrow");
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::Malformed));
}

#[test]
fn exp_is_required_unless_turned_off() {
    let mut claims = sign::claims(NOW);
    claims.as_object_mut().expect("object").remove("exp");
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(
        verifier(json!({})).verify(&token, NOW),
        Err(Rejection::MissingExp)
    );
    assert!(
        verifier(json!({"require_exp": false}))
            .verify(&token, NOW)
            .is_ok()
    );
}

#[test]
fn issuer_and_audience() {
    let verifier = verifier(json!({}));
    let mut claims = sign::claims(NOW);
    claims["iss"] = json!("https://evil.test");
    assert_eq!(
        verifier.verify(&sign::sign(Key::Hs1, &claims), NOW),
        Err(Rejection::BadIssuer)
    );
    claims.as_object_mut().expect("object").remove("iss");
    assert_eq!(
        verifier.verify(&sign::sign(Key::Hs1, &claims), NOW),
        Err(Rejection::BadIssuer)
    );

    let mut claims = sign::claims(NOW);
    claims["aud"] = json!(["billing", AUDIENCE]);
    assert!(
        verifier.verify(&sign::sign(Key::Hs1, &claims), NOW).is_ok(),
        "array aud"
    );
    claims["aud"] = json!(["billing"]);
    assert_eq!(
        verifier.verify(&sign::sign(Key::Hs1, &claims), NOW),
        Err(Rejection::BadAudience)
    );
    claims.as_object_mut().expect("object").remove("aud");
    assert_eq!(
        verifier.verify(&sign::sign(Key::Hs1, &claims), NOW),
        Err(Rejection::BadAudience)
    );
    // Without configured audiences, aud is not checked.
    let any_audience =
        Verifier::from_json(&json!({"jwks": sign::jwks(), "issuers": [ISSUER]})).expect("valid");
    assert!(
        any_audience
            .verify(&sign::sign(Key::Hs1, &claims), NOW)
            .is_ok()
    );
}

#[test]
fn structural_garbage_is_malformed() {
    let verifier = verifier(json!({}));
    let claims = sign::b64(sign::claims(NOW).to_string());
    let header = sign::b64(json!({"alg": "HS256"}).to_string());
    for token in [
        String::new(),
        "a".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d.e".to_owned(),
        format!("{header}.{claims}.sig.extra"),
        format!("{}.{claims}.AAAA", sign::b64("[]")),
        format!("{}.{claims}.AAAA", sign::b64("{\"alg\": 5}")),
        format!("{header}=.{claims}.AAAA"),
        format!(
            "{}.{claims}.AAAA",
            sign::b64(json!({"alg": "HS256", "crit": ["exp"]}).to_string())
        ),
        "x".repeat(crate::jwt::MAX_TOKEN_BYTES + 1),
    ] {
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(Rejection::Malformed),
            "{token:.60}"
        );
    }
    // A signed payload that is not an object.
    let header = json!({"alg": "HS256", "kid": "hs-1"});
    let signing_input = format!("{}.{}", sign::b64(header.to_string()), sign::b64("[1,2]"));
    let token = format!(
        "{signing_input}.{}",
        sign::b64(sign::signature(Key::Hs1, signing_input.as_bytes()))
    );
    assert_eq!(verifier.verify(&token, NOW), Err(Rejection::Malformed));
}

#[test]
fn jwks_as_a_json_string_works() {
    let config = json!({"jwks": sign::JWKS, "issuers": [ISSUER]});
    let verifier = Verifier::from_json(&config).expect("string JWKS");
    let token = sign::sign(Key::Ec1, &sign::claims(NOW));
    assert!(verifier.verify(&token, NOW).is_ok());
}

#[test]
fn jwks_errors_name_the_field() {
    let rsa = sign::jwks_with(&["rsa-1"])["keys"][0].clone();
    let ec = sign::jwks_with(&["ec-1"])["keys"][0].clone();
    let oct = sign::jwks_with(&["hs-1"])["keys"][0].clone();
    let with = |key: &Value, field: &str, value: Value| {
        let mut key = key.clone();
        key[field] = value;
        key
    };
    let without = |key: &Value, field: &str| {
        let mut key = key.clone();
        key.as_object_mut().expect("object").remove(field);
        key
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"keys": []}), "jwt.jwks.keys: at least one key"),
        (json!([]), "jwt.jwks: expected a JWKS object"),
        (json!("{not json"), "jwt.jwks: not a JSON document"),
        (
            json!({"keys": [rsa.clone(), with(&rsa, "n", json!("AQAB"))]}),
            "jwt.jwks.keys[1].n: RSA keys must have at least 2048 bits",
        ),
        (
            json!({"keys": [with(&rsa, "n", json!("not base64!"))]}),
            "jwt.jwks.keys[0].n: not base64url",
        ),
        (
            json!({"keys": [without(&rsa, "e")]}),
            "jwt.jwks.keys[0]: missing field `e`",
        ),
        (
            json!({"keys": [with(&rsa, "alg", json!("ES256"))]}),
            "jwt.jwks.keys[0].alg: `ES256` is not supported for a `RSA` key; supported: RS256, RS384, RS512, PS256, PS384, PS512",
        ),
        (
            json!({"keys": [with(&rsa, "d", json!("AQAB"))]}),
            "jwt.jwks.keys[0].d: this is a private key",
        ),
        (
            json!({"keys": [with(&rsa, "use", json!("enc"))]}),
            "jwt.jwks.keys[0].use",
        ),
        (
            json!({"keys": [with(&ec, "crv", json!("P-521"))]}),
            "jwt.jwks.keys[0].crv: unsupported curve `P-521`",
        ),
        (
            json!({"keys": [with(&ec, "x", json!("AQAB"))]}),
            "jwt.jwks.keys[0].x: a P-256 coordinate is 32 bytes",
        ),
        (
            json!({"keys": [with(&ec, "y", ec["x"].clone())]}),
            "jwt.jwks.keys[0]: x and y are not a point on P-256",
        ),
        (
            json!({"keys": [with(&oct, "k", json!("c2hvcnQ"))]}),
            "jwt.jwks.keys[0].k: HS256 secrets must be at least 32 bytes",
        ),
        (
            json!({"keys": [with(&oct, "kty", json!("DSA"))]}),
            "jwt.jwks.keys[0].kty: unsupported key type `DSA`",
        ),
        (
            json!({"keys": [rsa.clone(), rsa.clone()]}),
            "jwt.jwks.keys[1].kid: another RS256 key already has kid `rsa-1`",
        ),
        (
            json!({"keys": [with(&rsa, "kid", json!(7))]}),
            "jwt.jwks.keys[0].kid: expected a string",
        ),
    ];
    for (jwks, expected) in cases {
        let err =
            Verifier::from_json(&json!({"jwks": jwks, "issuers": [ISSUER]})).expect_err(expected);
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
    }
}

#[test]
fn errors_never_quote_key_material() {
    let mut oct = sign::jwks_with(&["hs-1"])["keys"][0].clone();
    oct["k"] = json!("c2VjcmV0!c2VjcmV0");
    let err = Verifier::from_json(&json!({"jwks": {"keys": [oct]}, "issuers": [ISSUER]}))
        .expect_err("bad base64");
    assert!(!err.contains("c2VjcmV0"), "{err}");
}

#[test]
fn clock_skew_takes_the_shared_duration_syntax() {
    for (skew, seconds) in [
        (json!(90), 90),
        (json!("90"), 90),
        (json!("1m30s"), 90),
        (json!("1m 30s"), 90),
        (json!("1.5m"), 90),
        (json!("0.5h"), 1800),
        (json!("1h"), 3600),
    ] {
        assert_eq!(
            verifier(json!({"clock_skew": skew})).clock_skew(),
            seconds,
            "{skew}"
        );
    }
    for (skew, expected) in [
        ("1.5s", "must be whole seconds"),
        ("250ms", "must be whole seconds"),
        ("5x", "invalid duration \"5x\": unknown unit \"x\""),
        ("1d", "jwt.clock_skew: at most 3600 seconds; got 86400"),
    ] {
        let err = try_verifier(json!({"clock_skew": skew})).expect_err(skew);
        assert!(err.contains(expected), "{skew}: {err}");
    }
}

#[test]
fn other_jwt_settings_are_checked() {
    let cases = [
        (
            json!({"algorithms": []}),
            "jwt.algorithms: must not be empty",
        ),
        (
            json!({"algorithms": ["none"]}),
            "jwt.algorithms[0]: unsupported algorithm `none`",
        ),
        (
            json!({"algorithms": ["RS256", "ES512"]}),
            "jwt.algorithms[1]: unsupported algorithm",
        ),
        (json!({"issuers": []}), "jwt.issuers: at least one issuer"),
        (
            json!({"audiences": [""]}),
            "jwt.audiences[0]: must not be empty",
        ),
        (json!({"clock_skew": "2h"}), "jwt.clock_skew: at most 3600"),
    ];
    for (extra, expected) in cases {
        let err = try_verifier(extra).expect_err(expected);
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
    }
    let only_hs = Verifier::from_json(
        &json!({"jwks": sign::jwks_with(&["hs-1"]), "issuers": [ISSUER], "algorithms": ["RS256"]}),
    )
    .expect_err("no RS256 key");
    assert!(
        only_hs.starts_with("jwt.algorithms[0]: no key in jwt.jwks is for RS256"),
        "{only_hs}"
    );
}
