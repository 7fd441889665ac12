//! The authz filter (`filters/authz`): JWT (RS256, ES256, HS256) and API-key authentication,
//! deny/allow rules, audit mode, claims forwarded as headers, 401/403 replies, metrics, and
//! config errors naming the field.
//!
//! Harness tests run the filter in-process on the virtual clock (wall time starts at
//! `HARNESS_EPOCH_SECS`, so tokens are signed relative to it and expiry is tested with
//! `advance`); the end-to-end tests go through the proxy with real sockets and real time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Value, json};
use weft_runtime::{LoadError, Verdict};
use weft_tests::harness::{Decision, HARNESS_EPOCH_SECS, Harness, TestRequest};
use weft_tests::{Scrape, Upstream, get, guests, proxy_start_error, start_proxy};

use crate::{filter, one_route};

#[path = "../../fixtures/authz/sign.rs"]
mod sign;

use sign::{AUDIENCE, ISSUER, Key};

const DECISIONS: &str = "weft_filter_authz_decisions_total";
const NOW: u64 = HARNESS_EPOCH_SECS;

/// A config with the fixture JWKS, the test issuer and audience, plus `extra` fields in `jwt`,
/// and `top` fields at the top level.
fn config(jwt_extra: Value, top: Value) -> Value {
    let mut jwt = json!({"jwks": sign::jwks(), "issuers": [ISSUER], "audiences": [AUDIENCE]});
    merge(&mut jwt, jwt_extra);
    let mut config = json!({"jwt": jwt});
    merge(&mut config, top);
    config
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

fn load(config: Value) -> Harness {
    Harness::load("authz", guests::AUTHZ, config).expect("the config is valid")
}

fn call(harness: &Harness, request: &mut TestRequest) -> Verdict {
    harness.on_request(request).expect("the filter never fails")
}

fn decision(harness: &Harness, request: &mut TestRequest) -> Decision {
    Decision::from(&call(harness, request))
}

fn bearer(token: &str) -> TestRequest {
    TestRequest::get("/orders/7").header("authorization", &format!("Bearer {token}"))
}

/// The reply of a verdict that must be a local response with `status`.
fn reply(verdict: &Verdict, status: u16) -> &http::Response<bytes::Bytes> {
    match verdict {
        Verdict::Respond(response) if response.status().as_u16() == status => response,
        other => panic!("expected a {status}, got {:?}", Decision::from(other)),
    }
}

fn www_authenticate(response: &http::Response<bytes::Bytes>) -> &str {
    response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("a 401 carries www-authenticate")
}

fn count(scrape: &Scrape, decision: &str, reason: &str) -> f64 {
    scrape
        .value(DECISIONS, &[("decision", decision), ("reason", reason)])
        .unwrap_or(0.0)
}

#[test]
fn every_algorithm_is_accepted_and_forwards_claims() {
    let harness = load(config(
        json!({"claims_to_headers": [{"claim": "sub", "header": "x-user-id"}, {"claim": "org.id", "header": "x-org"}]}),
        json!({}),
    ));
    for key in [Key::Rsa1, Key::Rsa2, Key::Ec1, Key::Hs1] {
        let token = sign::sign(key, &sign::claims(NOW));
        let mut request = bearer(&token);
        assert_eq!(
            decision(&harness, &mut request),
            Decision::Continue,
            "{key:?}"
        );
        assert_eq!(request.header_value("x-user-id"), Some("user-7"), "{key:?}");
        assert_eq!(request.header_value("x-org"), Some("42"), "{key:?}");
        assert_eq!(
            request.header_value("authorization"),
            None,
            "{key:?}: the token is not forwarded by default"
        );
    }
}

#[test]
fn kid_and_algorithm_must_match_the_key() {
    let harness = load(config(json!({}), json!({})));
    let claims = sign::claims(NOW);
    let cases = [
        // Signed by rsa-2, naming rsa-1.
        (
            sign::sign_with_header(Key::Rsa2, &json!({"alg": "RS256", "kid": "rsa-1"}), &claims),
            "invalid signature",
        ),
        // Key confusion: HS256 naming an RSA key.
        (
            sign::sign_with_header(Key::Hs1, &json!({"alg": "HS256", "kid": "rsa-1"}), &claims),
            "unknown signing key",
        ),
        (
            format!(
                "{}.{}.",
                sign::b64(json!({"alg": "none"}).to_string()),
                sign::b64(claims.to_string())
            ),
            "signing algorithm not allowed",
        ),
    ];
    for (token, description) in cases {
        let verdict = call(&harness, &mut bearer(&token));
        let response = reply(&verdict, 401);
        assert_eq!(
            www_authenticate(response),
            format!(
                "Bearer realm=\"weft\", error=\"invalid_token\", error_description=\"{description}\""
            )
        );
    }
    // rsa-2 named correctly works.
    let token = sign::sign(Key::Rsa2, &claims);
    assert_eq!(decision(&harness, &mut bearer(&token)), Decision::Continue);

    // Only RS256 allowed: a valid HS256 token is refused.
    let rs_only = load(config(json!({"algorithms": ["RS256"]}), json!({})));
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(
        decision(&rs_only, &mut bearer(&token)),
        Decision::Respond(401)
    );
    let scrape = rs_only.scrape();
    assert_eq!(count(&scrape, "unauthenticated", "bad_algorithm"), 1.0);
}

#[test]
fn tampered_tokens_are_rejected_even_after_the_original_was_cached() {
    let harness = load(config(json!({}), json!({})));
    for key in [Key::Rsa1, Key::Ec1, Key::Hs1] {
        let token = sign::sign(key, &sign::claims(NOW));
        assert_eq!(decision(&harness, &mut bearer(&token)), Decision::Continue);
        let (head, _) = token.rsplit_once('.').expect("three segments");
        let (header, _) = head.split_once('.').expect("three segments");
        let mut forged = sign::claims(NOW);
        forged["sub"] = json!("admin");
        let signature = token.rsplit('.').next().expect("signature");
        let tampered = format!("{header}.{}.{signature}", sign::b64(forged.to_string()));
        let verdict = call(&harness, &mut bearer(&tampered));
        let response = reply(&verdict, 401);
        assert!(
            www_authenticate(response).contains("invalid signature"),
            "{key:?}"
        );
    }
    assert_eq!(
        count(&harness.scrape(), "unauthenticated", "bad_signature"),
        3.0
    );
}

#[test]
fn expiry_and_not_before_follow_the_clock_with_skew() {
    let harness = load(config(json!({"clock_skew": 60}), json!({})));
    let mut claims = sign::claims(NOW);
    claims["exp"] = json!(NOW + 120);
    let expiring = sign::sign(Key::Hs1, &claims);
    assert_eq!(
        decision(&harness, &mut bearer(&expiring)),
        Decision::Continue
    );
    // Past exp, within the skew: still fine (served from the cache, whose hits check times).
    harness.advance(Duration::from_secs(179));
    assert_eq!(
        decision(&harness, &mut bearer(&expiring)),
        Decision::Continue
    );
    harness.advance(Duration::from_secs(1));
    let verdict = call(&harness, &mut bearer(&expiring));
    assert!(www_authenticate(reply(&verdict, 401)).contains("token expired"));

    // nbf 100 s after now (harness time is NOW + 180 here).
    let now = NOW + 180;
    let mut claims = sign::claims(now);
    claims["nbf"] = json!(now + 100);
    let early = sign::sign(Key::Hs1, &claims);
    let verdict = call(&harness, &mut bearer(&early));
    assert!(www_authenticate(reply(&verdict, 401)).contains("token not yet valid"));
    harness.advance(Duration::from_secs(40));
    assert_eq!(decision(&harness, &mut bearer(&early)), Decision::Continue);

    let scrape = harness.scrape();
    assert_eq!(count(&scrape, "unauthenticated", "expired"), 1.0);
    assert_eq!(count(&scrape, "unauthenticated", "not_yet_valid"), 1.0);
    assert_eq!(count(&scrape, "allowed", "authenticated"), 3.0);
}

#[test]
fn issuer_and_audience_are_checked() {
    let harness = load(config(json!({}), json!({})));
    let mut claims = sign::claims(NOW);
    claims["iss"] = json!("https://other.test");
    let verdict = call(&harness, &mut bearer(&sign::sign(Key::Hs1, &claims)));
    assert!(www_authenticate(reply(&verdict, 401)).contains("issuer not allowed"));
    let mut claims = sign::claims(NOW);
    claims["aud"] = json!(["billing", "shipping"]);
    let verdict = call(&harness, &mut bearer(&sign::sign(Key::Hs1, &claims)));
    assert!(www_authenticate(reply(&verdict, 401)).contains("audience not allowed"));
    claims["aud"] = json!(["billing", AUDIENCE]);
    let token = sign::sign(Key::Hs1, &claims);
    assert_eq!(decision(&harness, &mut bearer(&token)), Decision::Continue);
}

#[test]
fn tokens_are_found_in_headers_and_cookies() {
    let harness = load(config(
        json!({"from": [{"header": "x-jwt"}, {"cookie": "session"}, {"header": "authorization"}]}),
        json!({}),
    ));
    let token = sign::sign(Key::Hs1, &sign::claims(NOW));

    let mut request = TestRequest::get("/").header("x-jwt", &token);
    assert_eq!(decision(&harness, &mut request), Decision::Continue);
    assert_eq!(request.header_value("x-jwt"), None, "stripped");

    let mut request =
        TestRequest::get("/").header("cookie", &format!("theme=dark; session={token}; lang=fr"));
    assert_eq!(decision(&harness, &mut request), Decision::Continue);
    assert_eq!(
        request.header_value("cookie"),
        Some("theme=dark; lang=fr"),
        "only the token cookie is stripped"
    );

    let mut request = bearer(&token);
    assert_eq!(decision(&harness, &mut request), Decision::Continue);

    // First found wins: garbage in x-jwt is not rescued by a valid bearer token.
    let mut request = bearer(&token).header("x-jwt", "garbage");
    assert_eq!(decision(&harness, &mut request), Decision::Respond(401));

    // Another scheme in authorization does not count as a token.
    let mut request = TestRequest::get("/").header("authorization", "Basic dTpw");
    let verdict = call(&harness, &mut request);
    assert_eq!(
        www_authenticate(reply(&verdict, 401)),
        "Bearer realm=\"weft\""
    );

    // forward_token keeps it.
    let forwarding = load(config(json!({"forward_token": true}), json!({})));
    let mut request = bearer(&token);
    assert_eq!(decision(&forwarding, &mut request), Decision::Continue);
    assert_eq!(
        request.header_value("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

#[test]
fn client_supplied_claim_headers_are_replaced_or_removed() {
    let harness = load(config(
        json!({"claims_to_headers": [
            {"claim": "sub", "header": "x-user-id"},
            {"claim": "tenant", "header": "x-tenant"},
        ]}),
        json!({"allow_missing": true, "rules": {"allow": [{"paths": [{"prefix": "/public/"}]}]}}),
    ));
    let token = sign::sign(Key::Hs1, &sign::claims(NOW));
    let mut request = TestRequest::get("/public/x")
        .header("authorization", &format!("Bearer {token}"))
        .header("x-user-id", "admin")
        .header("x-user-id", "root")
        .header("x-tenant", "evil");
    assert_eq!(decision(&harness, &mut request), Decision::Continue);
    let values: Vec<_> = request.head.headers.get_all("x-user-id").iter().collect();
    assert_eq!(values, ["user-7"], "the claim replaces every client value");
    assert_eq!(
        request.header_value("x-tenant"),
        None,
        "the token has no tenant claim: the client's copy goes"
    );

    // Anonymous (allow_missing) requests keep none of them either.
    let mut request = TestRequest::get("/public/x").header("x-user-id", "admin");
    assert_eq!(decision(&harness, &mut request), Decision::Continue);
    assert_eq!(request.header_value("x-user-id"), None);
}

#[test]
fn deny_rules_come_first_then_allow_then_default_deny() {
    let harness = load(config(
        json!({}),
        json!({"rules": {
            "deny": [{"paths": [{"prefix": "/admin"}], "claims": {"roles": "reader"}}],
            "allow": [
                {"paths": [{"prefix": "/orders/"}], "methods": ["GET"], "claims": {"scope": "orders:read"}},
                {"paths": [{"prefix": "/admin"}]},
            ],
        }}),
    ));
    let token = sign::sign(Key::Hs1, &sign::claims(NOW));
    let auth = format!("Bearer {token}");
    let run = |method: &str, path: &str| {
        let mut request = TestRequest::new(method, path).header("authorization", &auth);
        decision(&harness, &mut request)
    };
    assert_eq!(run("GET", "/orders/7"), Decision::Continue);
    assert_eq!(run("DELETE", "/orders/7"), Decision::Respond(403));
    assert_eq!(
        run("GET", "/admin/users"),
        Decision::Respond(403),
        "deny beats allow"
    );
    assert_eq!(
        run("GET", "//admin/../admin/users"),
        Decision::Respond(403),
        "normalized"
    );
    assert_eq!(
        run("GET", "/elsewhere"),
        Decision::Respond(403),
        "default deny"
    );

    let verdict = call(
        &harness,
        &mut TestRequest::get("/elsewhere").header("authorization", &auth),
    );
    let response = reply(&verdict, 403);
    assert!(response.headers().get("www-authenticate").is_none());
    assert_eq!(response.body().as_ref(), b"forbidden\n");

    let scrape = harness.scrape();
    assert_eq!(count(&scrape, "allowed", "allow_rule"), 1.0);
    assert_eq!(count(&scrape, "denied", "deny_rule"), 2.0);
    assert_eq!(count(&scrape, "denied", "no_allow_rule"), 3.0);
}

#[test]
fn client_cidrs_match_ipv4_and_ipv6() {
    let harness = load(config(
        json!({}),
        json!({"rules": {
            "deny": [{"client_cidrs": ["192.0.2.0/24"]}],
            "allow": [{"client_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}],
        }}),
    ));
    let token = sign::sign(Key::Hs1, &sign::claims(NOW));
    let from = |client: &str| decision(&harness, &mut bearer(&token).client(client));
    assert_eq!(from("10.1.2.3:5000"), Decision::Continue);
    assert_eq!(from("[2001:db8::7]:443"), Decision::Continue);
    assert_eq!(from("[::ffff:10.9.9.9]:443"), Decision::Continue);
    assert_eq!(from("192.0.2.10:5000"), Decision::Respond(403));
    assert_eq!(from("172.16.0.1:5000"), Decision::Respond(403));
    assert_eq!(from("[2001:db9::7]:443"), Decision::Respond(403));
}

#[test]
fn mesh_principals_decide_on_the_callers_mtls_identity() {
    // A mesh-only policy (no jwt, no api_keys): only `orders` of `shop` may call; the
    // harness reports the peer identity as an mTLS listener does.
    let harness = load(json!({"rules": {
        "allow": [{"from": {"principals": ["cluster.local/ns/shop/sa/orders"]}}],
    }}));
    let from = |id: &str| decision(&harness, &mut TestRequest::get("/").peer_identity(id));
    assert_eq!(
        from("spiffe://cluster.local/ns/shop/sa/orders"),
        Decision::Continue
    );
    assert_eq!(
        from("spiffe://cluster.local/ns/shop/sa/web"),
        Decision::Respond(403)
    );
    assert_eq!(
        from("spiffe://cluster.local/ns/dev/sa/orders"),
        Decision::Respond(403)
    );
    // Plaintext: no identity, no principal.
    assert_eq!(
        decision(&harness, &mut TestRequest::get("/")),
        Decision::Respond(403)
    );
    assert_eq!(count(&harness.scrape(), "denied", "no_allow_rule"), 3.0);
}

#[test]
fn audit_mode_never_blocks_but_counts() {
    let harness = load(config(
        json!({"claims_to_headers": [{"claim": "sub", "header": "x-user-id"}]}),
        json!({"mode": "audit", "rules": {"allow": [{"paths": [{"prefix": "/orders/"}]}]}}),
    ));
    let token = sign::sign(Key::Hs1, &sign::claims(NOW));
    let mut missing = TestRequest::get("/orders/7").header("x-user-id", "forged");
    assert_eq!(decision(&harness, &mut missing), Decision::Continue);
    assert_eq!(
        missing.header_value("x-user-id"),
        None,
        "spoofed header still removed"
    );
    assert_eq!(
        decision(&harness, &mut bearer("garbage")),
        Decision::Continue
    );
    let mut forbidden =
        TestRequest::get("/admin").header("authorization", &format!("Bearer {token}"));
    assert_eq!(decision(&harness, &mut forbidden), Decision::Continue);
    assert_eq!(forbidden.header_value("x-user-id"), Some("user-7"));
    let mut allowed = bearer(&token);
    assert_eq!(decision(&harness, &mut allowed), Decision::Continue);

    let scrape = harness.scrape();
    assert_eq!(
        count(&scrape, "audit_unauthenticated", "missing_token"),
        1.0
    );
    assert_eq!(count(&scrape, "audit_unauthenticated", "malformed"), 1.0);
    assert_eq!(count(&scrape, "audit_denied", "no_allow_rule"), 1.0);
    assert_eq!(count(&scrape, "allowed", "allow_rule"), 1.0);
    assert_eq!(count(&scrape, "denied", "no_allow_rule"), 0.0);
    assert_eq!(count(&scrape, "unauthenticated", "missing_token"), 0.0);
}

/// SHA-256 in hex, as `api_keys.keys[].sha256` wants it.
fn sha256_hex(key: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn api_keys_authenticate_and_name_the_identity() {
    let harness = load(json!({
        "api_keys": {
            "keys": [
                {"name": "team-a", "sha256": sha256_hex("key-of-team-a")},
                {"name": "team-b", "sha256": sha256_hex("key-of-team-b")},
            ],
            "name_header": "x-client",
        },
        "rules": {"allow": [{"identities": ["team-a"]}]},
    }));
    let mut a = TestRequest::get("/")
        .header("x-api-key", "key-of-team-a")
        .header("x-client", "team-b");
    assert_eq!(decision(&harness, &mut a), Decision::Continue);
    assert_eq!(a.header_value("x-client"), Some("team-a"));
    assert_eq!(
        a.header_value("x-api-key"),
        None,
        "the key is not forwarded"
    );

    let mut b = TestRequest::get("/").header("x-api-key", "key-of-team-b");
    assert_eq!(decision(&harness, &mut b), Decision::Respond(403));

    let verdict = call(
        &harness,
        &mut TestRequest::get("/").header("x-api-key", "guess"),
    );
    let response = reply(&verdict, 401);
    assert_eq!(www_authenticate(response), "ApiKey realm=\"weft\"");
    assert_eq!(response.body().as_ref(), b"invalid API key\n");
    assert_eq!(
        decision(&harness, &mut TestRequest::get("/")),
        Decision::Respond(401)
    );

    let scrape = harness.scrape();
    assert_eq!(count(&scrape, "allowed", "allow_rule"), 1.0);
    assert_eq!(count(&scrape, "denied", "no_allow_rule"), 1.0);
    assert_eq!(count(&scrape, "unauthenticated", "bad_api_key"), 1.0);
    assert_eq!(count(&scrape, "unauthenticated", "missing_token"), 1.0);
}

#[test]
fn garbage_tokens_get_401_never_a_failure() {
    let harness = load(config(json!({}), json!({})));
    let huge = "A".repeat(20_000);
    let nested = sign::b64(format!("{}1{}", "[".repeat(3000), "]".repeat(3000)));
    let garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"...".to_vec(),
        b"a.b.c".to_vec(),
        b"eyJhbGciOiJIUzI1NiJ9.e30.".to_vec(),
        format!("{huge}.{huge}.{huge}").into_bytes(),
        format!("{nested}.{nested}.AAAA").into_bytes(),
        b"\xff\xfe\xfd.\x80\x81.\xc3\x28".to_vec(),
        b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.!!!!".to_vec(),
    ];
    for token in &garbage {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(token);
        let mut request = TestRequest::get("/").header_bytes("authorization", &value);
        let verdict = harness.on_request(&mut request).unwrap_or_else(|failure| {
            panic!(
                "{:?}: the filter failed: {failure}",
                String::from_utf8_lossy(token)
            )
        });
        assert_eq!(Decision::from(&verdict), Decision::Respond(401));
    }
}

#[test]
fn metrics_count_every_decision() {
    let harness = load(config(
        json!({}),
        json!({"rules": {"allow": [{"methods": ["GET"]}]}}),
    ));
    let token = sign::sign(Key::Ec1, &sign::claims(NOW));
    for _ in 0..3 {
        call(&harness, &mut bearer(&token));
    }
    call(
        &harness,
        &mut TestRequest::new("POST", "/").header("authorization", &format!("Bearer {token}")),
    );
    call(&harness, &mut TestRequest::get("/"));
    call(&harness, &mut bearer("x.y.z"));
    let scrape = harness.scrape();
    assert_eq!(count(&scrape, "allowed", "allow_rule"), 3.0);
    assert_eq!(count(&scrape, "denied", "no_allow_rule"), 1.0);
    assert_eq!(count(&scrape, "unauthenticated", "missing_token"), 1.0);
    assert_eq!(count(&scrape, "unauthenticated", "malformed"), 1.0);
    assert_eq!(scrape.value(DECISIONS, &[]), Some(6.0));
}

#[test]
fn bad_configs_are_rejected_naming_the_field() {
    let mut short_rsa = sign::jwks_with(&["rsa-1"]);
    short_rsa["keys"][0]["n"] = json!("AQAB");
    let mut two_keys = sign::jwks_with(&["ec-1"]);
    let keys = two_keys["keys"].as_array_mut().expect("keys");
    keys.push(short_rsa["keys"][0].clone());
    let cases = [
        (
            config(json!({"jwks": two_keys}), json!({})),
            "jwt.jwks.keys[1].n: RSA keys must have at least 2048 bits",
        ),
        (
            config(
                json!({}),
                json!({"rules": {"allow": [{"client_cidrs": ["10.0.0.0/8", "::1/128", "300.0.0.0/8"]}]}}),
            ),
            "rules.allow[0].client_cidrs[2]: `300.0.0.0/8` is not an IP address",
        ),
        (
            config(json!({"algorithms": ["none"]}), json!({})),
            "jwt.algorithms[0]: unsupported algorithm `none`",
        ),
        (config(json!({}), json!({"mode": "dry_run"})), "mode"),
        (
            json!({"jwt": {"jwks": sign::jwks()}}),
            "missing field `issuers`",
        ),
        (json!({}), "give `jwt`, `api_keys` or both"),
    ];
    for (config, expected) in cases {
        match Harness::load("authz", guests::AUTHZ, config) {
            Err(LoadError::Rejected(message)) => {
                assert!(
                    message.contains(expected),
                    "expected {expected:?} in {message:?}"
                )
            }
            Err(other) => panic!("expected a rejection mentioning {expected:?}, got {other}"),
            Ok(_) => panic!("the config must be rejected ({expected})"),
        }
    }
}

// End to end, through the proxy, with real time.

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn proxy_yaml(upstream: std::net::SocketAddr, config: &Value) -> String {
    // JSON is YAML: the config goes in as a flow mapping.
    one_route(
        upstream,
        &[filter("authz", guests::AUTHZ, &format!("config: {config}"))],
    )
}

fn e2e_config() -> Value {
    config(
        json!({"claims_to_headers": [{"claim": "sub", "header": "x-user-id"}]}),
        json!({"rules": {"allow": [{"paths": [{"prefix": "/orders/"}], "claims": {"scope": "orders:read"}}]}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_allowed_request_reaches_the_upstream_with_claim_headers() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &e2e_config())).await?;
    for key in [Key::Rsa1, Key::Ec1, Key::Hs1] {
        let token = sign::sign(key, &sign::claims(unix_now()));
        let auth = format!("Bearer {token}");
        let headers = [("authorization", auth.as_str()), ("x-user-id", "admin")];
        let reply = get(proxy.addr(), "/orders/7", &headers).await?;
        assert_eq!(reply.status, StatusCode::OK, "{key:?}: {}", reply.text());
        let seen = reply.seen()?;
        assert_eq!(seen.header_values("x-user-id"), ["user-7"], "{key:?}");
        assert!(!seen.has_header("authorization"), "{key:?}: token stripped");
    }
    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(
        scrape.require(
            DECISIONS,
            &[("decision", "allowed"), ("reason", "allow_rule")]
        )?,
        3.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_missing_token_gets_401_with_a_challenge() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &e2e_config())).await?;
    let reply = get(proxy.addr(), "/orders/7", &[]).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"weft\"")
    );
    assert_eq!(reply.text(), "authentication required\n");

    let mut claims = sign::claims(unix_now());
    claims["exp"] = json!(unix_now() - 3600);
    let expired = format!("Bearer {}", sign::sign(Key::Hs1, &claims));
    let reply = get(
        proxy.addr(),
        "/orders/7",
        &[("authorization", expired.as_str())],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"weft\", error=\"invalid_token\", error_description=\"token expired\"")
    );
    assert_eq!(
        upstream.requests(),
        0,
        "rejected requests never reach the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_valid_but_forbidden_gets_403() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &e2e_config())).await?;
    let token = sign::sign(Key::Rsa2, &sign::claims(unix_now()));
    let auth = format!("Bearer {token}");
    let reply = get(proxy.addr(), "/admin", &[("authorization", auth.as_str())]).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(reply.text(), "forbidden\n");

    let mut claims = sign::claims(unix_now());
    claims["scope"] = json!("orders:write");
    let auth = format!("Bearer {}", sign::sign(Key::Rsa2, &claims));
    let reply = get(
        proxy.addr(),
        "/orders/7",
        &[("authorization", auth.as_str())],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "no orders:read scope");
    assert_eq!(upstream.requests(), 0);
    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(
        scrape.require(
            DECISIONS,
            &[("decision", "denied"), ("reason", "no_allow_rule")]
        )?,
        2.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_garbage_tokens_get_401_not_500() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &e2e_config())).await?;
    let valid = sign::sign(Key::Hs1, &sign::claims(unix_now()));
    let (head, _) = valid.rsplit_once('.').expect("three segments");
    let huge = "A".repeat(12_000);
    let garbage = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        format!("{head}."),
        format!("{head}.AAAA"),
        format!("{valid}.extra"),
        format!("{huge}.{huge}.x"),
        format!("{}.e30.AAAA", sign::b64("{\"alg\":\"none\"}")),
        format!(
            "{}.e30.AAAA",
            sign::b64("{\"alg\":".to_owned() + &"[".repeat(2000))
        ),
    ];
    for token in &garbage {
        let auth = format!("Bearer {token}");
        let reply = get(
            proxy.addr(),
            "/orders/7",
            &[("authorization", auth.as_str())],
        )
        .await?;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{token:.40}: {}",
            reply.text()
        );
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.contains("error=\"invalid_token\"")),
            "{token:.40}: {:?}",
            reply.headers
        );
    }
    assert_eq!(upstream.requests(), 0);
    // The instance survived all of it.
    let auth = format!("Bearer {valid}");
    let reply = get(
        proxy.addr(),
        "/orders/7",
        &[("authorization", auth.as_str())],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_bad_config_stops_the_proxy_naming_the_field() {
    let mut jwks = sign::jwks_with(&["rsa-1", "ec-1"]);
    jwks["keys"][1]["crv"] = json!("P-521");
    let config = config(json!({"jwks": jwks}), json!({}));
    let yaml = proxy_yaml("127.0.0.1:9".parse().expect("address"), &config);
    let message = proxy_start_error(&yaml).await;
    assert!(message.contains("authz"), "names the filter: {message}");
    assert!(
        message.contains("jwt.jwks.keys[1].crv: unsupported curve `P-521`"),
        "names the field: {message}"
    );
}

/// A validly signed token with its payload changed to `sub: admin`: it fails only at the
/// signature.
fn forged(now: u64) -> String {
    let token = sign::sign(Key::Hs1, &sign::claims(now));
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let signature = parts.nth(1).expect("signature");
    let mut claims = sign::claims(now);
    claims["sub"] = json!("admin");
    format!("{header}.{}.{signature}", sign::b64(claims.to_string()))
}

/// Every credential a request presents must verify: a forged token next to a valid one (a
/// second `Authorization` header, a cookie) is refused and never reaches the upstream; and a
/// `Basic` value ahead of a forged bearer token does not make the request anonymous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_forged_token_beside_a_valid_one_is_refused() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let config = config(
        json!({
            "from": [{"header": "authorization"}, {"cookie": "session"}],
            "claims_to_headers": [{"claim": "sub", "header": "x-user-id"}],
        }),
        json!({"allow_missing": true, "rules": {"allow": [
            {"paths": [{"prefix": "/public/"}]},
            {"paths": [{"prefix": "/orders/"}], "claims": {"scope": "orders:read"}},
        ]}}),
    );
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &config)).await?;
    let now = unix_now();
    let valid = format!("Bearer {}", sign::sign(Key::Hs1, &sign::claims(now)));
    let forged_token = forged(now);
    let forged = format!("Bearer {forged_token}");
    let forged_cookie = format!("session={forged_token}");
    let valid_cookie = format!(
        "theme=dark; session={}",
        sign::sign(Key::Hs1, &sign::claims(now))
    );
    let refused: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "valid, then forged authorization",
            vec![("authorization", &valid), ("authorization", &forged)],
        ),
        (
            "forged, then valid authorization",
            vec![("authorization", &forged), ("authorization", &valid)],
        ),
        (
            "valid header token, forged cookie token",
            vec![("authorization", &valid), ("cookie", &forged_cookie)],
        ),
        (
            "valid cookie, then a forged one in another cookie header",
            vec![("cookie", &valid_cookie), ("cookie", &forged_cookie)],
        ),
        (
            "allow_missing: Basic, then a forged bearer token (on a public path)",
            vec![
                ("authorization", "Basic dXNlcjpwdw=="),
                ("authorization", &forged),
            ],
        ),
    ];
    for (case, headers) in &refused {
        for path in ["/orders/7", "/public/x"] {
            let reply = get(proxy.addr(), path, headers).await?;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{case} ({path}): {}",
                reply.text()
            );
            assert_eq!(
                reply.header("www-authenticate"),
                Some(
                    "Bearer realm=\"weft\", error=\"invalid_token\", error_description=\"invalid signature\""
                ),
                "{case} ({path})"
            );
        }
    }
    assert_eq!(
        upstream.requests(),
        0,
        "nothing forged reached the upstream"
    );

    // Only verified credentials go on: the valid token in the header and in a cookie is
    // accepted, and neither the header nor the cookie reaches the upstream; the identity is
    // the token's, not a client-sent header.
    let headers = [
        ("authorization", valid.as_str()),
        ("cookie", valid_cookie.as_str()),
        ("x-user-id", "admin"),
    ];
    let reply = get(proxy.addr(), "/orders/7", &headers).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = reply.seen()?;
    assert!(!seen.has_header("authorization"));
    assert_eq!(seen.header_values("cookie"), ["theme=dark"]);
    assert_eq!(seen.header_values("x-user-id"), ["user-7"]);
    // Basic alone on a public path: anonymous, and the Basic header goes on untouched (it is
    // no credential of this filter; the upstream may check it).
    let reply = get(
        proxy.addr(),
        "/public/x",
        &[("authorization", "Basic dXNlcjpwdw==")],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.seen()?.header_values("authorization"),
        ["Basic dXNlcjpwdw=="]
    );
    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(
        scrape.require(
            DECISIONS,
            &[("decision", "unauthenticated"), ("reason", "bad_signature")]
        )?,
        10.0
    );
    Ok(())
}

/// With `forward_token`, the upstream gets the verified tokens and nothing else from the
/// token header: a `Basic` value sent beside a valid bearer token is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_forwarded_token_headers_carry_only_verified_tokens() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let config = config(json!({"forward_token": true}), json!({}));
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &config)).await?;
    let valid = format!("Bearer {}", sign::sign(Key::Hs1, &sign::claims(unix_now())));
    let headers = [
        ("authorization", "Basic dXNlcjpwdw=="),
        ("authorization", valid.as_str()),
    ];
    let reply = get(proxy.addr(), "/orders/7", &headers).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.seen()?.header_values("authorization"),
        [valid.as_str()]
    );
    Ok(())
}

/// A header sent twice is matched as its values joined with `,`: `x-role: user` plus
/// `x-role: admin` is `user,admin`, which does not pass an `exact: admin` allow rule. A deny
/// rule sees every element too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_repeated_header_does_not_satisfy_an_exact_rule() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let config = config(
        json!({}),
        json!({"rules": {
            "deny": [{"headers": [{"name": "x-env", "exact": "prod"}]}],
            "allow": [{"headers": [{"name": "x-role", "exact": "admin"}]}],
        }}),
    );
    let proxy = start_proxy(&proxy_yaml(upstream.addr(), &config)).await?;
    let auth = format!("Bearer {}", sign::sign(Key::Hs1, &sign::claims(unix_now())));
    let auth = ("authorization", auth.as_str());
    let addr = proxy.addr();
    let status = |headers: Vec<(&'static str, &'static str)>| {
        let mut all = vec![auth];
        all.extend(headers);
        async move { anyhow::Ok(get(addr, "/orders/7", &all).await?.status) }
    };
    assert_eq!(status(vec![("x-role", "admin")]).await?, StatusCode::OK);
    assert_eq!(
        status(vec![("x-role", "user"), ("x-role", "admin")]).await?,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(vec![("x-role", "admin"), ("x-role", "user")]).await?,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(vec![
            ("x-role", "admin"),
            ("x-env", "dev"),
            ("x-env", "prod")
        ])
        .await?,
        StatusCode::FORBIDDEN
    );
    assert_eq!(upstream.requests(), 1);
    Ok(())
}
