//! Property tests standing in for a fuzzer (cargo-fuzz needs a nightly toolchain): the token
//! verifier, and the whole policy around it, must never panic on any input, and must never
//! accept a token that differs from a validly signed one. Mesh principals: the parsers take any
//! text, and wildcards match as Istio's string matching does.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::sign::{self, ISSUER, Key};
use crate::config::Config;
use crate::jwt::{Rejection, Verifier};
use weft_sdk::facts::FakeRequest;

use crate::policy::{Policy, Verdict};
use crate::principals::{Peer, Principal, Segment, Spans};

const NOW: u64 = 1_767_225_600;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        Verifier::from_json(&json!({"jwks": sign::jwks(), "issuers": [ISSUER]}))
            .expect("valid config")
    })
}

/// One valid token per fixture key, signed once (RSA signing is slow in debug builds).
fn valid_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        [Key::Rsa1, Key::Rsa2, Key::Ec1, Key::Hs1]
            .into_iter()
            .map(|key| sign::sign(key, &sign::claims(NOW)))
            .collect()
    })
}

/// How to damage a token.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    Truncate { at: usize },
    Delete { at: usize },
    Insert { at: usize, byte: u8 },
    SwapSegments { a: usize, b: usize },
    ReplaceSegment { index: usize, with: Vec<u8> },
    HugeSegment { index: usize, len: usize },
    NestedJson { index: usize, depth: usize },
    BadBase64 { index: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments { a, b }),
        (0usize..3, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(index, with)| Mutation::ReplaceSegment { index, with }),
        (0usize..3, 1usize..40_000).prop_map(|(index, len)| Mutation::HugeSegment { index, len }),
        (0usize..2, 1usize..5_000).prop_map(|(index, depth)| Mutation::NestedJson { index, depth }),
        (0usize..3).prop_map(|index| Mutation::BadBase64 { index }),
    ]
}

fn apply(token: &str, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    let segments: Vec<Vec<u8>> = token.split('.').map(|s| s.as_bytes().to_vec()).collect();
    let join = |segments: &[Vec<u8>]| segments.join(&b'.');
    match mutation {
        Mutation::FlipBit { at, bit } => {
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            bytes
        }
        Mutation::Truncate { at } => {
            bytes.truncate(at % bytes.len());
            bytes
        }
        Mutation::Delete { at } => {
            bytes.remove(at % bytes.len());
            bytes
        }
        Mutation::Insert { at, byte } => {
            bytes.insert(at % (bytes.len() + 1), *byte);
            bytes
        }
        Mutation::SwapSegments { a, b } => {
            let mut segments = segments;
            segments.swap(*a, *b);
            join(&segments)
        }
        Mutation::ReplaceSegment { index, with } => {
            let mut segments = segments;
            segments[*index] = with.clone();
            join(&segments)
        }
        Mutation::HugeSegment { index, len } => {
            let mut segments = segments;
            segments[*index] = vec![b'A'; *len];
            join(&segments)
        }
        Mutation::NestedJson { index, depth } => {
            let mut segments = segments;
            let json = format!("{{\"alg\":{}1{}}}", "[".repeat(*depth), "]".repeat(*depth));
            segments[*index] = sign::b64(json).into_bytes();
            join(&segments)
        }
        Mutation::BadBase64 { index } => {
            let mut segments = segments;
            segments[*index].extend_from_slice(b"=*");
            join(&segments)
        }
    }
}

/// A request carrying arbitrary bytes as its bearer token.
fn raw(token: Vec<u8>) -> FakeRequest {
    FakeRequest::get("/").with_header("authorization", [b"Bearer ".as_slice(), &token].concat())
}

thread_local! {
    /// One policy for all cases, so its cache holds the valid tokens after their first use.
    static POLICY: Policy = policy();
}

fn policy() -> Policy {
    let config: Config = serde_json::from_value(json!({
        "jwt": {"jwks": sign::jwks(), "issuers": [ISSUER], "cache_size": 8,
                "claims_to_headers": [{"claim": "sub", "header": "x-user"}]},
        "rules": {"allow": [{"claims": {"sub": "user-7"}}]},
    }))
    .expect("config");
    Policy::from_config(config).expect("valid policy")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any mutation of a valid token is rejected, directly and through the policy (whose
    /// cache already holds the original token).
    #[test]
    fn mutated_tokens_are_rejected(which in 0usize..4, mutation in mutation()) {
        let original = &valid_tokens()[which];
        let mutated = apply(original, &mutation);
        POLICY.with(|policy| {
        prop_assert_eq!(policy.evaluate(&raw(original.as_bytes().to_vec()), || NOW).verdict, Verdict::Allowed);
        let evaluation = policy.evaluate(&raw(mutated.clone()), || NOW);
        if mutated.trim_ascii() == original.as_bytes() {
            prop_assert_eq!(evaluation.verdict, Verdict::Allowed);
        } else {
            prop_assert_eq!(evaluation.verdict, Verdict::Unauthenticated, "accepted {:?}", mutation);
        }
        if let Ok(text) = std::str::from_utf8(&mutated)
            && text != original.as_str()
        {
            prop_assert!(verifier().verify(text, NOW).is_err());
        }
        Ok(())
        })?;
    }

    /// Arbitrary text never panics and is never accepted.
    #[test]
    fn random_text_is_rejected(text in any::<String>()) {
        prop_assert!(verifier().verify(&text, NOW).is_err());
    }

    /// Three random segments of base64url (the shape of a token) are rejected.
    #[test]
    fn random_segments_are_rejected(
        header in proptest::collection::vec(any::<u8>(), 0..200),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        signature in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let token = format!("{}.{}.{}", sign::b64(header), sign::b64(payload), sign::b64(signature));
        prop_assert!(verifier().verify(&token, NOW).is_err());
    }

    /// Random bytes through the policy (as a header value, UTF-8 or not) never panic.
    #[test]
    fn random_bytes_through_the_policy(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let evaluation = POLICY.with(|policy| policy.evaluate(&raw(bytes), || NOW));
        prop_assert_eq!(evaluation.verdict, Verdict::Unauthenticated);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Validly signed tokens with arbitrary JSON claims or headers never panic; they are only
    /// accepted when the claims are an object with the right issuer.
    #[test]
    fn signed_arbitrary_json_never_panics(payload in json_value(), header_extra in json_value()) {
        let header = json!({"alg": "HS256", "kid": "hs-1", "x": header_extra});
        let token = sign::sign_with_header(Key::Hs1, &header, &payload);
        let result = verifier().verify(&token, NOW);
        let plausible = payload.get("iss") == Some(&json!(ISSUER));
        if !plausible {
            prop_assert!(result.is_err());
        }
        // Arbitrary JSON as the whole header.
        let signing_input = format!("{}.{}", sign::b64(header_extra.to_string()), sign::b64(payload.to_string()));
        let token = format!("{signing_input}.{}", sign::b64(sign::signature(Key::Hs1, signing_input.as_bytes())));
        let result = verifier().verify(&token, NOW);
        prop_assert!(matches!(result, Err(Rejection::Malformed | Rejection::BadAlgorithm)), "{:?}", result);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
        Just(json!(ISSUER)),
        Just(json!(NOW + 10)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("iss".to_owned()),
                        Just("exp".to_owned()),
                        Just("nbf".to_owned()),
                        Just("alg".to_owned()),
                        any::<String>()
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The other parsers of request input: paths for the rules, cookie headers.
    #[test]
    fn path_and_cookie_parsers_never_panic(
        path in any::<String>(),
        header in proptest::collection::vec(any::<u8>(), 0..300),
        name in "[a-z]{1,4}",
    ) {
        let normalized = crate::rules::normalize_path(&path);
        prop_assert!(normalized.starts_with('/'));
        prop_assert!(!normalized.contains("//"));
        prop_assert!(!normalized.split('/').any(|segment| segment == ".." || segment == "."));
        for value in weft_sdk::text::cookie_values(&header, &name) {
            prop_assert!(value.len() <= header.len());
        }
        let _ = weft_sdk::text::cookies_without(&[header], &name);
    }
}

/// A workload ID's segments from a small alphabet that includes the keywords' letters, so that
/// patterns and identities often share segments, and values like `ns` or `sa` stand where the
/// keywords could be confused with them.
fn workload_segments() -> impl Strategy<Value = (String, String, String)> {
    ("[nsa.]{1,3}", "[nsa]{1,3}", "[nsa]{1,3}")
        .prop_filter("`.` and `..` are no segments", |(_, ns, sa)| {
            ns != "." && ns != ".." && sa != "." && sa != ".."
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The principal and identity parsers take any text.
    #[test]
    fn principal_parsers_never_panic(text in any::<String>(), identity in any::<String>()) {
        let _ = Principal::parse(&text);
        let _ = Segment::namespace(&text);
        if let Some(spans) = Spans::parse(&identity) {
            let id = spans.of(&identity);
            prop_assert_eq!(
                format!("spiffe://{}/ns/{}/sa/{}", id.trust_domain, id.namespace, id.service_account),
                identity
            );
        }
    }

    /// Istio's exact, prefix and suffix forms, matched on segments, say what Istio's string
    /// matching on `<trust-domain>/ns/<namespace>/sa/<service-account>` says, wherever the `*`
    /// cuts the principal.
    #[test]
    fn wildcards_match_as_istio_does(
        pattern in workload_segments(),
        identity in workload_segments(),
        cut in any::<prop::sample::Index>(),
        form in 0u8..3,
        scheme in any::<bool>(),
    ) {
        let written = format!("{}/ns/{}/sa/{}", pattern.0, pattern.1, pattern.2);
        let text = format!("{}/ns/{}/sa/{}", identity.0, identity.1, identity.2);
        let at = cut.index(written.len() + 1);
        let (principal, expected) = match form {
            0 => (written.clone(), text == written),
            1 => (format!("{}*", &written[..at]), text.starts_with(&written[..at])),
            _ => (format!("*{}", &written[at..]), text.ends_with(&written[at..])),
        };
        let principal = if scheme && principal != "*" {
            format!("spiffe://{principal}")
        } else {
            principal
        };
        let parsed = Principal::parse(&principal);
        prop_assert!(parsed.is_ok(), "{principal}: {parsed:?}");
        let identity = format!("spiffe://{text}");
        let spans = Spans::parse(&identity);
        prop_assert!(spans.is_some(), "{identity}");
        let peer = spans.map_or(Peer::Other, |spans| Peer::Workload(spans.of(&identity)));
        prop_assert_eq!(
            parsed.map(|p| p.matches(peer)),
            Ok(expected),
            "{} against {}",
            principal,
            identity
        );
    }
}
