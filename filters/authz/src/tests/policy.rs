//! The policy: credentials, rules, replies and edits, on requests built in memory.

use serde_json::{Value, json};

use super::sign::{self, ISSUER, Key};
use crate::config::Config;
use crate::jwt::Rejection;
use weft_sdk::facts::FakeRequest;
use weft_sdk::text::cookies_without;

use crate::policy::{Edit, Evaluation, Policy, Reason, Verdict};

const NOW: u64 = 1_767_225_600;

/// `GET path` from 127.0.0.1.
fn get(path: &str) -> FakeRequest {
    FakeRequest::get(path).with_client_address("127.0.0.1:40000")
}

/// A bearer token on a request under construction.
pub(super) trait WithBearer {
    fn bearer(self, token: &str) -> Self;
}

impl WithBearer for FakeRequest {
    fn bearer(self, token: &str) -> FakeRequest {
        self.with_header("authorization", format!("Bearer {token}"))
    }
}

/// How many times the policy asked for the path (to check the facts are lazy).
fn path_reads(request: &FakeRequest) -> usize {
    request
        .reads()
        .iter()
        .filter(|read| *read == "path")
        .count()
}

pub(super) fn policy(config: Value) -> Policy {
    try_policy(config).expect("valid config")
}

pub(super) fn try_policy(config: Value) -> Result<Policy, String> {
    let config: Config = serde_json::from_value(config).map_err(|err| err.to_string())?;
    Policy::from_config(config)
}

pub(super) fn jwt_config(extra: Value) -> Value {
    let mut jwt = json!({"jwks": sign::jwks(), "issuers": [ISSUER]});
    for (k, v) in extra.as_object().expect("object").clone() {
        jwt[k] = v;
    }
    jwt
}

pub(super) fn eval(policy: &Policy, request: &FakeRequest) -> Evaluation {
    policy.evaluate(request, || NOW)
}

fn edits(policy: &Policy, evaluation: &Evaluation) -> Vec<String> {
    let mut out = Vec::new();
    policy.edits(evaluation, |edit| {
        out.push(match edit {
            Edit::Set(name, value) => format!("set {name}: {value}"),
            Edit::Remove(name) => format!("remove {name}"),
            Edit::RemoveCookie(name) => format!("remove cookie {name}"),
            Edit::KeepTokens(name) => format!("keep tokens of {name}"),
        })
    });
    out
}

pub(super) fn token() -> String {
    sign::sign(Key::Hs1, &sign::claims(NOW))
}

#[test]
fn missing_bad_and_good_tokens() {
    let policy = policy(json!({"jwt": jwt_config(json!({}))}));
    let missing = eval(&policy, &get("/"));
    assert_eq!(
        (missing.verdict, missing.reason),
        (Verdict::Unauthenticated, Reason::MissingToken)
    );
    let reply = policy.reply(&missing).expect("401");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.as_deref(), Some("Bearer realm=\"weft\""));

    let bad = eval(&policy, &get("/").bearer("garbage"));
    assert_eq!(bad.reason, Reason::Token(Rejection::Malformed));
    let reply = policy.reply(&bad).expect("401");
    assert_eq!(
        reply.challenge.as_deref(),
        Some(
            "Bearer realm=\"weft\", error=\"invalid_token\", error_description=\"malformed token\""
        )
    );
    assert_eq!(reply.body, "invalid token: malformed token\n");

    let good = eval(&policy, &get("/").bearer(&token()));
    assert_eq!(
        (good.verdict, good.reason),
        (Verdict::Allowed, Reason::Authenticated)
    );
    assert_eq!(policy.reply(&good), None);
    // Not forwarded by default.
    assert_eq!(edits(&policy, &good), ["remove authorization"]);
}

#[test]
fn token_sources() {
    let policy = policy(json!({"jwt": jwt_config(json!({
        "from": [{"header": "x-jwt"}, {"cookie": "session"}, {"header": "Authorization"}],
        "forward_token": false,
    }))}));
    let token = token();
    // The scheme is case-insensitive and only applies to authorization.
    let request = get("/").with_header("authorization", format!("bearer {token}"));
    let evaluation = eval(&policy, &request);
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(edits(&policy, &evaluation), ["remove authorization"]);

    let request = get("/")
        .with_header("cookie", "theme=dark")
        .with_header("cookie", format!("a=1; session=\"{token}\"; b=2"));
    let evaluation = eval(&policy, &request);
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(edits(&policy, &evaluation), ["remove cookie session"]);

    // Every token present must verify: garbage in x-jwt is not rescued by a valid bearer token.
    let request = get("/").with_header("x-jwt", "garbage").bearer(&token);
    assert_eq!(
        eval(&policy, &request).reason,
        Reason::Token(Rejection::Malformed)
    );

    // Another scheme is not a token: keep looking, then report it missing.
    let request = get("/").with_header("authorization", "Basic dXNlcjpwdw==");
    assert_eq!(eval(&policy, &request).reason, Reason::MissingToken);
    // Not UTF-8.
    let request = get("/").with_header("x-jwt", b"\xff\xfe.a.b");
    assert_eq!(
        eval(&policy, &request).reason,
        Reason::Token(Rejection::Malformed)
    );
    // Empty after the scheme.
    let request = get("/").with_header("authorization", "Bearer   ");
    assert_eq!(
        eval(&policy, &request).reason,
        Reason::Token(Rejection::Malformed)
    );
}

#[test]
fn cookie_removal_keeps_the_others() {
    let headers = vec![b"a=1; session=x".to_vec(), b"b=2".to_vec()];
    assert_eq!(
        cookies_without(&headers, "session"),
        Some(b"a=1; b=2".to_vec())
    );
    assert_eq!(cookies_without(&[b"session=x".to_vec()], "session"), None);
    assert_eq!(
        cookies_without(&[b"sessionx=1".to_vec()], "session"),
        Some(b"sessionx=1".to_vec())
    );
}

#[test]
fn claims_become_headers_and_spoofed_copies_go() {
    let policy = policy(json!({"jwt": jwt_config(json!({
        "forward_token": true,
        "claims_to_headers": [
            {"claim": "sub", "header": "X-User-Id"},
            {"claim": "org.id", "header": "x-org"},
            {"claim": "roles", "header": "x-roles"},
            {"claim": "missing", "header": "x-missing"},
            {"claim": "org", "header": "x-org-json"},
        ],
    }))}));
    let request = get("/")
        .bearer(&token())
        .with_header("x-user-id", "admin")
        .with_header("x-missing", "forged");
    let evaluation = eval(&policy, &request);
    assert_eq!(
        edits(&policy, &evaluation),
        [
            "set x-user-id: user-7",
            "set x-org: 42",
            "set x-roles: reader,auditor",
            "remove x-missing",
            "set x-org-json: {\"id\":42,\"name\":\"acme\"}",
        ]
    );
    // Without a valid identity (audit mode continues such requests), every claim header goes.
    let evaluation = eval(&policy, &get("/").with_header("x-user-id", "admin"));
    assert_eq!(evaluation.verdict, Verdict::Unauthenticated);
    assert!(
        edits(&policy, &evaluation)
            .iter()
            .all(|e| e.starts_with("remove "))
    );
}

#[test]
fn claim_values_with_control_characters_are_not_forwarded() {
    let policy = policy(json!({"jwt": jwt_config(json!({
        "claims_to_headers": [{"claim": "sub", "header": "x-user"}],
    }))}));
    let mut claims = sign::claims(NOW);
    claims["sub"] = json!("a\r\nx-admin: true");
    let evaluation = eval(&policy, &get("/").bearer(&sign::sign(Key::Hs1, &claims)));
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(
        edits(&policy, &evaluation),
        ["remove x-user", "remove authorization"]
    );
}

#[test]
fn deny_before_allow_and_default_deny() {
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "rules": {
            "deny": [{"paths": [{"prefix": "/admin"}], "claims": {"roles": "reader"}}],
            "allow": [
                {"paths": [{"prefix": "/orders/"}], "methods": ["get"], "claims": {"scope": "orders:read"}},
                {"paths": [{"prefix": "/admin"}]},
            ],
        },
    }));
    let token = token();
    let case = |method: &str, path: &str| {
        let request = FakeRequest::new(method, path)
            .with_client_address("127.0.0.1:40000")
            .bearer(&token);
        let evaluation = eval(&policy, &request);
        (evaluation.verdict, evaluation.reason)
    };
    assert_eq!(
        case("GET", "/orders/7"),
        (Verdict::Allowed, Reason::AllowRule)
    );
    assert_eq!(
        case("POST", "/orders/7"),
        (Verdict::Denied, Reason::NoAllowRule)
    );
    // The token has role reader: the deny rule wins over the second allow rule.
    assert_eq!(
        case("GET", "/admin/users"),
        (Verdict::Denied, Reason::DenyRule)
    );
    // Spelled differently, still /admin.
    assert_eq!(
        case("GET", "//%61dmin/./users"),
        (Verdict::Denied, Reason::DenyRule)
    );
    assert_eq!(
        case("GET", "/other"),
        (Verdict::Denied, Reason::NoAllowRule)
    );
    let reply = policy
        .reply(&eval(&policy, &get("/other").bearer(&token)))
        .expect("403");
    assert_eq!((reply.status, reply.challenge), (403, None));
}

#[test]
fn claim_conditions() {
    let rule = |claims: Value| {
        policy(json!({"jwt": jwt_config(json!({})), "rules": {"allow": [{"claims": claims}]}}))
    };
    let token = token();
    let allowed =
        |claims: Value| eval(&rule(claims), &get("/").bearer(&token)).verdict == Verdict::Allowed;
    assert!(allowed(json!({"sub": "user-7"})));
    assert!(!allowed(json!({"sub": "user-8"})));
    assert!(
        allowed(json!({"sub": ["user-8", "user-7"]})),
        "any of a list"
    );
    assert!(allowed(json!({"roles": "auditor"})), "array contains");
    assert!(allowed(json!({"scope": "orders:write"})), "scope word");
    assert!(!allowed(json!({"scope": "orders"})), "not a substring");
    assert!(allowed(json!({"org.id": 42})));
    assert!(allowed(json!({"org.id": "42"})), "string vs number");
    assert!(
        !allowed(json!({"sub": "user-7", "org.name": "other"})),
        "all entries"
    );
    assert!(!allowed(json!({"nope": "x"})));
}

#[test]
fn cidr_method_header_and_peer_conditions() {
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "rules": {
            "deny": [{"client_cidrs": ["203.0.113.0/24", "2001:db8::/32"]}],
            "allow": [
                {"headers": [{"name": "X-Env", "exact": "prod"}]},
                {"peer_identities": [{"prefix": "spiffe://cluster.local/ns/prod/"}]},
            ],
        },
    }));
    let token = token();
    let from = |client: &str| {
        let request = get("/")
            .with_client_address(client)
            .bearer(&token)
            .with_header("x-env", "prod");
        eval(&policy, &request).reason
    };
    assert_eq!(from("203.0.113.9:5000"), Reason::DenyRule);
    assert_eq!(from("[2001:db8::1]:443"), Reason::DenyRule);
    assert_eq!(from("[::ffff:203.0.113.9]:443"), Reason::DenyRule);
    assert_eq!(from("198.51.100.1:5000"), Reason::AllowRule);
    assert_eq!(from("[2001:db9::1]:443"), Reason::AllowRule);

    let no_header = eval(&policy, &get("/").bearer(&token));
    assert_eq!(no_header.reason, Reason::NoAllowRule);
    let peer = get("/")
        .bearer(&token)
        .with_peer_identity("spiffe://cluster.local/ns/prod/sa/web");
    assert_eq!(eval(&policy, &peer).reason, Reason::AllowRule);
}

#[test]
fn facts_are_read_only_when_a_rule_needs_them() {
    let no_paths = policy(json!({"jwt": jwt_config(json!({}))}));
    let request = get("/x").bearer(&token());
    eval(&no_paths, &request);
    assert_eq!(path_reads(&request), 0);
    let two_path_rules = policy(json!({
        "jwt": jwt_config(json!({})),
        "rules": {"deny": [{"paths": [{"exact": "/a"}]}], "allow": [{"paths": [{"exact": "/x"}]}]},
    }));
    eval(&two_path_rules, &request);
    assert_eq!(path_reads(&request), 1, "fetched once for both rules");
}

#[test]
fn api_keys() {
    // sha256("key-a") and sha256("key-b").
    let policy = policy(json!({
        "api_keys": {
            "keys": [
                {"name": "team-a", "sha256": sha256_hex(b"key-a")},
                {"name": "team-b", "sha256": sha256_hex(b"key-b").to_uppercase()},
            ],
            "name_header": "x-client",
        },
        "rules": {"allow": [{"identities": ["team-a"]}]},
    }));
    let a = eval(
        &policy,
        &get("/")
            .with_header("x-api-key", "key-a")
            .with_header("x-client", "team-b"),
    );
    assert_eq!((a.verdict, a.reason), (Verdict::Allowed, Reason::AllowRule));
    assert_eq!(
        edits(&policy, &a),
        ["set x-client: team-a", "remove x-api-key"]
    );
    let b = eval(&policy, &get("/").with_header("x-api-key", "key-b"));
    assert_eq!(
        (b.verdict, b.reason),
        (Verdict::Denied, Reason::NoAllowRule)
    );
    let bad = eval(&policy, &get("/").with_header("x-api-key", "key-c"));
    assert_eq!(
        (bad.verdict, bad.reason),
        (Verdict::Unauthenticated, Reason::BadApiKey)
    );
    let reply = policy.reply(&bad).expect("401");
    assert_eq!(reply.challenge.as_deref(), Some("ApiKey realm=\"weft\""));
    let missing = eval(&policy, &get("/"));
    assert_eq!(missing.reason, Reason::MissingToken);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn allow_missing_sends_anonymous_requests_to_the_rules() {
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "allow_missing": true,
        "rules": {
            "deny": [{"paths": [{"prefix": "/internal"}]}],
            "allow": [{"paths": [{"prefix": "/public/"}]}, {"claims": {"sub": "user-7"}}],
        },
    }));
    let anonymous = |path: &str| {
        let evaluation = eval(&policy, &get(path));
        (evaluation.verdict, evaluation.reason)
    };
    assert_eq!(
        anonymous("/public/logo.png"),
        (Verdict::Allowed, Reason::AllowRule)
    );
    assert_eq!(
        anonymous("/orders"),
        (Verdict::Unauthenticated, Reason::MissingToken)
    );
    assert_eq!(
        anonymous("/internal/x"),
        (Verdict::Denied, Reason::DenyRule)
    );
    // A bad token is still rejected, not treated as missing.
    let bad = eval(&policy, &get("/public/x").bearer("garbage"));
    assert_eq!(bad.verdict, Verdict::Unauthenticated);
    let good = eval(&policy, &get("/orders").bearer(&token()));
    assert_eq!(good.verdict, Verdict::Allowed);
}

#[test]
fn cache_skips_verification_but_not_expiry() {
    let policy = policy(json!({"jwt": jwt_config(json!({"clock_skew": 0}))}));
    let token = token();
    let request = get("/").bearer(&token);
    assert_eq!(policy.evaluate(&request, || NOW).verdict, Verdict::Allowed);
    assert_eq!(
        policy.evaluate(&request, || NOW + 10).verdict,
        Verdict::Allowed
    );
    let expired = policy.evaluate(&request, || NOW + 3600);
    assert_eq!(expired.reason, Reason::Token(Rejection::Expired));
}

#[test]
fn config_errors_name_the_field() {
    let jwt = jwt_config(json!({}));
    let hash = sha256_hex(b"k");
    let cases = [
        (json!({}), "give `jwt`, `api_keys` or both"),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"client_cidrs": ["10.0.0.0/8", "::/0", "10.1.1.1/8"]}]}}),
            "rules.allow[0].client_cidrs[2]: `10.1.1.1/8` has bits set",
        ),
        (
            json!({"jwt": jwt, "rules": {"deny": [{}]}}),
            "rules.deny[0]: a rule needs at least one condition",
        ),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"paths": [{"exact": "x"}]}]}}),
            "rules.allow[0].paths[0]: a path must start with `/`",
        ),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"paths": [{"exact": "/x", "prefix": "/y"}]}]}}),
            "rules.allow[0].paths[0]: give exactly one of",
        ),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"headers": [{"name": "x"}]}]}}),
            "rules.allow[0].headers[0]: give exactly one of",
        ),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"methods": ["GET POST"]}]}}),
            "rules.allow[0].methods[0]",
        ),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"claims": {"roles": []}}]}}),
            "rules.allow[0].claims.roles: give at least one value",
        ),
        (
            json!({"jwt": jwt, "rules": {"allow": [{"claims": {"roles": {"a": 1}}}]}}),
            "rules.allow[0].claims.roles: values must be",
        ),
        (
            json!({"jwt": jwt_config(json!({"from": []}))}),
            "jwt.from: give at least one",
        ),
        (
            json!({"jwt": jwt_config(json!({"from": [{"header": "a", "cookie": "b"}]}))}),
            "jwt.from[0]: give exactly one",
        ),
        (
            json!({"jwt": jwt_config(json!({"from": [{"cookie": "a b"}]}))}),
            "jwt.from[0].cookie",
        ),
        (
            json!({"jwt": jwt_config(json!({"claims_to_headers": [{"claim": "sub", "header": "x user"}]}))}),
            "jwt.claims_to_headers[0].header",
        ),
        (
            json!({"jwt": jwt_config(json!({"claims_to_headers": [{"claim": "sub", "header": "authorization"}]}))}),
            "jwt.claims_to_headers[0].header: `authorization` carries credentials",
        ),
        (
            json!({"jwt": jwt_config(json!({"claims_to_headers": [{"claim": "sub", "header": "x-a"}, {"claim": "iss", "header": "X-A"}]}))}),
            "jwt.claims_to_headers[1].header: `x-a` is already set",
        ),
        (
            json!({"api_keys": {"keys": []}}),
            "api_keys.keys: at least one key",
        ),
        (
            json!({"api_keys": {"keys": [{"name": "a", "sha256": "abc"}]}}),
            "api_keys.keys[0].sha256: expected 64 hex digits",
        ),
        (
            json!({"api_keys": {"keys": [{"name": "a", "sha256": hash}, {"name": "a", "sha256": sha256_hex(b"j")}]}}),
            "api_keys.keys[1].name: `a` is already used",
        ),
        (
            json!({"api_keys": {"keys": [{"name": "a", "sha256": hash}, {"name": "b", "sha256": hash}]}}),
            "api_keys.keys[1].sha256: the same key",
        ),
        (
            json!({"api_keys": {"keys": [{"name": "a", "sha256": hash}], "name_header": "x-api-key"}}),
            "api_keys.name_header: must differ",
        ),
        (
            json!({"jwt": jwt_config(json!({})), "realm": "a\"b"}),
            "realm:",
        ),
    ];
    for (config, expected) in cases {
        let err = try_policy(config).expect_err(expected);
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
    }
}

/// A validly signed token with its payload replaced (`sub: admin`): a forgery that fails only at
/// the signature.
fn forged() -> String {
    let token = token();
    let mut parts = token.split('.');
    let (header, _, signature) = (parts.next(), parts.next(), parts.next());
    let mut claims = sign::claims(NOW);
    claims["sub"] = json!("admin");
    format!(
        "{}.{}.{}",
        header.expect("header"),
        sign::b64(claims.to_string()),
        signature.expect("signature")
    )
}

pub(super) fn verdict(policy: &Policy, request: &FakeRequest) -> (Verdict, Reason) {
    let evaluation = eval(policy, request);
    (evaluation.verdict, evaluation.reason)
}

const BAD_SIGNATURE: (Verdict, Reason) = (
    Verdict::Unauthenticated,
    Reason::Token(Rejection::BadSignature),
);

#[test]
fn every_token_present_must_verify() {
    let policy = policy(json!({"jwt": jwt_config(json!({
        "from": [{"header": "authorization"}, {"cookie": "session"}],
    }))}));
    let (token, forged) = (token(), forged());
    assert_eq!(verdict(&policy, &get("/").bearer(&forged)), BAD_SIGNATURE);
    // Two authorization headers, in either order.
    assert_eq!(
        verdict(&policy, &get("/").bearer(&token).bearer(&forged)),
        BAD_SIGNATURE
    );
    assert_eq!(
        verdict(&policy, &get("/").bearer(&forged).bearer(&token)),
        BAD_SIGNATURE
    );
    // A valid header token and a forged cookie token.
    let request = get("/")
        .bearer(&token)
        .with_header("cookie", format!("session={forged}"));
    assert_eq!(verdict(&policy, &request), BAD_SIGNATURE);
    // Two cookies of the name, in one cookie header or in two.
    let request = get("/").with_header("cookie", format!("session={token}; session={forged}"));
    assert_eq!(verdict(&policy, &request), BAD_SIGNATURE);
    let request = get("/")
        .with_header("cookie", format!("session={token}"))
        .with_header("cookie", format!("a=1; session={forged}"));
    assert_eq!(verdict(&policy, &request), BAD_SIGNATURE);
    // Garbage beside a valid token.
    let request = get("/")
        .bearer(&token)
        .with_header("authorization", "Bearer x");
    assert_eq!(
        verdict(&policy, &request),
        (
            Verdict::Unauthenticated,
            Reason::Token(Rejection::Malformed)
        )
    );

    // Every place holding a valid token: allowed, and every one is stripped.
    let request = get("/")
        .bearer(&token)
        .bearer(&token)
        .with_header("cookie", format!("a=1; session={token}"));
    let evaluation = eval(&policy, &request);
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(
        edits(&policy, &evaluation),
        ["remove authorization", "remove cookie session"]
    );
}

#[test]
fn other_schemes_beside_a_bearer_token_are_no_excuse() {
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "allow_missing": true,
        "rules": {"allow": [{"paths": [{"prefix": "/public/"}]}]},
    }));
    let basic = "Basic dXNlcjpwdw==";
    // Basic alone is no bearer token: anonymous, and the header is left to the upstream.
    let request = get("/public/x").with_header("authorization", basic);
    let evaluation = eval(&policy, &request);
    assert_eq!(
        (evaluation.verdict, evaluation.reason),
        (Verdict::Allowed, Reason::AllowRule)
    );
    assert_eq!(edits(&policy, &evaluation), Vec::<String>::new());
    // Basic, then a forged bearer token: the bearer token must verify.
    let request = get("/public/x")
        .with_header("authorization", basic)
        .bearer(&forged());
    assert_eq!(verdict(&policy, &request), BAD_SIGNATURE);
    // Basic, then a valid one: authenticated, and the whole header is stripped.
    let request = get("/public/x")
        .with_header("authorization", basic)
        .bearer(&token());
    let evaluation = eval(&policy, &request);
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(edits(&policy, &evaluation), ["remove authorization"]);
}

#[test]
fn forwarded_token_headers_keep_only_tokens() {
    let policy = policy(json!({"jwt": jwt_config(json!({"forward_token": true}))}));
    let token = token();
    let request = get("/")
        .with_header("authorization", "Basic dXNlcjpwdw==")
        .bearer(&token);
    let evaluation = eval(&policy, &request);
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(
        edits(&policy, &evaluation),
        ["keep tokens of authorization"]
    );
    assert!(policy.is_token_value("authorization", format!("bearer {token}").as_bytes()));
    assert!(!policy.is_token_value("authorization", b"Basic dXNlcjpwdw=="));
    assert!(!policy.is_token_value("x-other", format!("Bearer {token}").as_bytes()));
    // Only tokens: nothing to edit.
    let evaluation = eval(&policy, &get("/").bearer(&token).bearer(&token));
    assert_eq!(evaluation.verdict, Verdict::Allowed);
    assert_eq!(edits(&policy, &evaluation), Vec::<String>::new());
}

#[test]
fn every_api_key_and_token_present_must_verify() {
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "api_keys": {"keys": [{"name": "team-a", "sha256": sha256_hex(b"key-a")}]},
    }));
    let bad_key = (Verdict::Unauthenticated, Reason::BadApiKey);
    let request = get("/")
        .with_header("x-api-key", "key-a")
        .with_header("x-api-key", "guess");
    assert_eq!(verdict(&policy, &request), bad_key);
    let request = get("/").bearer(&token()).with_header("x-api-key", "guess");
    assert_eq!(verdict(&policy, &request), bad_key);
    let request = get("/").bearer(&forged()).with_header("x-api-key", "key-a");
    assert_eq!(verdict(&policy, &request), BAD_SIGNATURE);
    // Both valid: the token is the identity, and neither credential goes upstream.
    let request = get("/").bearer(&token()).with_header("x-api-key", "key-a");
    let evaluation = eval(&policy, &request);
    assert_eq!(
        (evaluation.verdict, evaluation.reason),
        (Verdict::Allowed, Reason::Authenticated)
    );
    assert_eq!(
        edits(&policy, &evaluation),
        ["remove authorization", "remove x-api-key"]
    );
}

#[test]
fn several_header_values_match_as_one_joined_value() {
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "rules": {
            "deny": [
                {"headers": [{"name": "x-team", "exact": "red,blue"}]},
                {"headers": [{"name": "x-env", "exact": "prod"}]},
            ],
            "allow": [
                {"headers": [{"name": "x-role", "exact": "admin"}]},
                {"headers": [{"name": "x-role", "exact": "reader,auditor"}]},
                {"headers": [{"name": "x-tier", "prefix": "gold"}]},
            ],
        },
    }));
    let token = token();
    let with = |headers: &[(&str, &str)]| {
        let mut request = get("/").bearer(&token);
        for (name, value) in headers {
            request = request.with_header(name, value);
        }
        verdict(&policy, &request)
    };
    let allowed = (Verdict::Allowed, Reason::AllowRule);
    let not_allowed = (Verdict::Denied, Reason::NoAllowRule);
    let denied = (Verdict::Denied, Reason::DenyRule);
    assert_eq!(with(&[("x-role", "admin")]), allowed);
    // `user,admin` is not `admin`: a second value does not satisfy the allow rule.
    assert_eq!(
        with(&[("x-role", "user"), ("x-role", "admin")]),
        not_allowed
    );
    assert_eq!(
        with(&[("x-role", "admin"), ("x-role", "user")]),
        not_allowed
    );
    assert_eq!(
        with(&[("x-role", "admin"), ("x-role", "admin")]),
        not_allowed
    );
    // Split or joined, the same value.
    assert_eq!(
        with(&[("x-role", "reader"), ("x-role", "auditor")]),
        allowed
    );
    assert_eq!(with(&[("x-role", "reader,auditor")]), allowed);
    assert_eq!(with(&[("x-tier", "gold"), ("x-tier", "x")]), allowed);
    assert_eq!(with(&[("x-tier", "x"), ("x-tier", "gold")]), not_allowed);
    // A deny rule sees the joined value, so splitting does not evade it...
    assert_eq!(
        with(&[("x-role", "admin"), ("x-team", "red"), ("x-team", "blue")]),
        denied
    );
    // ...and any element of it, so adding a value (or an element) does not either.
    assert_eq!(
        with(&[("x-role", "admin"), ("x-env", "dev"), ("x-env", "prod")]),
        denied
    );
    assert_eq!(with(&[("x-role", "admin"), ("x-env", "dev, prod")]), denied);
    assert_eq!(
        with(&[("x-role", "admin"), ("x-env", "production")]),
        allowed
    );
    // Present/absent conditions are unchanged.
    assert_eq!(with(&[("x-tier", "")]), not_allowed);
}
