//! Mesh principals (`from`): decisions on requests with and without an mTLS peer identity.

use serde_json::{Value, json};
use weft_sdk::facts::FakeRequest;

use super::policy::{WithBearer as _, eval, jwt_config, policy, token, try_policy, verdict};
use crate::policy::{Policy, Reason, Verdict};

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

const ALLOWED: (Verdict, Reason) = (Verdict::Allowed, Reason::AllowRule);
const DENIED: (Verdict, Reason) = (Verdict::Denied, Reason::DenyRule);
/// Anonymous (no token, `allow_missing`) and no allow rule matched.
const NOT_ALLOWED: (Verdict, Reason) = (Verdict::Unauthenticated, Reason::MissingToken);

/// Mesh callers bring no token: `allow_missing` sends them to the rules.
fn mesh_policy(rules: Value) -> Policy {
    policy(json!({"jwt": jwt_config(json!({})), "allow_missing": true, "rules": rules}))
}

/// An mTLS request from `identity`.
fn from(method: &str, path: &str, identity: &str) -> FakeRequest {
    FakeRequest::new(method, path)
        .with_client_address("10.0.0.7:40000")
        .with_peer_identity(identity)
}

/// A plaintext request.
fn plaintext(method: &str, path: &str) -> FakeRequest {
    FakeRequest::new(method, path).with_client_address("10.0.0.7:40000")
}

/// The decision for a `GET /` from each identity (`None`: plaintext).
fn decisions(policy: &Policy, identities: &[Option<&str>]) -> Vec<(Verdict, Reason)> {
    identities
        .iter()
        .map(|identity| match identity {
            Some(identity) => verdict(policy, &from("GET", "/", identity)),
            None => verdict(policy, &plaintext("GET", "/")),
        })
        .collect()
}

#[test]
fn consul_style_intention() {
    // Only `orders` in `shop` may POST /charge; everyone else is denied.
    let policy = mesh_policy(json!({
        "deny": [{"from": {"not_principals": [ORDERS]}}],
        "allow": [{
            "from": {"principals": [ORDERS]},
            "methods": ["POST"],
            "paths": [{"exact": "/charge"}],
        }],
    }));
    assert_eq!(verdict(&policy, &from("POST", "/charge", ORDERS)), ALLOWED);
    // Other callers: the deny rule.
    for other in [
        "spiffe://cluster.local/ns/shop/sa/web",
        "spiffe://cluster.local/ns/billing/sa/orders",
        "spiffe://other.example/ns/shop/sa/orders",
        "spiffe://cluster.local/ns/shop/sa/Orders",
        "spiffe://cluster.local/ns/shop/sa/orders2",
        "spiffe://cluster.local/ns/shop/sa/orders/",
        "spiffe://cluster.local/ns/shop/sa/orders?x=1",
        "cluster.local/ns/shop/sa/orders",
    ] {
        assert_eq!(
            verdict(&policy, &from("POST", "/charge", other)),
            DENIED,
            "{other}"
        );
    }
    assert_eq!(verdict(&policy, &plaintext("POST", "/charge")), DENIED);
    // `orders` itself, elsewhere: no allow rule matches (and it has no token: 401).
    assert_eq!(
        verdict(&policy, &from("GET", "/charge", ORDERS)),
        NOT_ALLOWED
    );
    assert_eq!(
        verdict(&policy, &from("POST", "/refund", ORDERS)),
        NOT_ALLOWED
    );
}

#[test]
fn exact_and_scheme_less_principals_mean_the_same() {
    let identities = [
        Some(ORDERS),
        Some("spiffe://cluster.local/ns/shop/sa/web"),
        Some("spiffe://cluster.local/ns/shopx/sa/orders"),
        Some("spiffe://cluster.localx/ns/shop/sa/orders"),
        Some("spiffe://cluster.local/ns/shop/sa/orders/x"),
        Some("cluster.local/ns/shop/sa/orders"),
        Some(""),
        None,
    ];
    let expected = [
        ALLOWED,
        NOT_ALLOWED,
        NOT_ALLOWED,
        NOT_ALLOWED,
        NOT_ALLOWED,
        NOT_ALLOWED,
        NOT_ALLOWED,
        NOT_ALLOWED,
    ];
    for principal in [ORDERS, "cluster.local/ns/shop/sa/orders"] {
        let policy = mesh_policy(json!({"allow": [{"from": {"principals": [principal]}}]}));
        assert_eq!(decisions(&policy, &identities), expected, "{principal}");
    }
    // A list matches when any of its principals does.
    let policy = mesh_policy(json!({
        "allow": [{"from": {"principals": ["cluster.local/ns/billing/sa/refunds", ORDERS]}}],
    }));
    assert_eq!(decisions(&policy, &identities), expected);
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/", "spiffe://cluster.local/ns/billing/sa/refunds")
        ),
        ALLOWED
    );
}

#[test]
fn segment_wildcards() {
    let identities = [
        Some(ORDERS),
        Some("spiffe://cluster.local/ns/billing/sa/orders"),
        Some("spiffe://cluster.local/ns/shop/sa/web"),
        Some("spiffe://other.example/ns/shop/sa/orders"),
        Some("spiffe://cluster.local/ns/shop/sa/orders/extra"),
        Some("spiffe://cluster.local/orders"),
        None,
    ];
    let case = |principal: &str| {
        let policy = mesh_policy(json!({"allow": [{"from": {"principals": [principal]}}]}));
        decisions(&policy, &identities)
            .into_iter()
            .map(|decision| decision == ALLOWED)
            .collect::<Vec<_>>()
    };
    let any_namespace = [true, true, false, false, false, false, false];
    assert_eq!(case("cluster.local/ns/*/sa/orders"), any_namespace);
    assert_eq!(case("spiffe://cluster.local/ns/*/sa/orders"), any_namespace);
    let any_service_account = [true, false, true, true, false, false, false];
    assert_eq!(case("spiffe://*/ns/shop/sa/*"), any_service_account);
    assert_eq!(case("*/ns/shop/sa/*"), any_service_account);
    // Istio's prefix and suffix forms, on segments.
    assert_eq!(
        case("cluster.local/ns/shop/*"),
        [true, false, true, false, false, false, false]
    );
    assert_eq!(
        case("*/sa/orders"),
        [true, true, false, true, false, false, false]
    );
    assert_eq!(
        case("cluster.local/ns/bill*"),
        [false, true, false, false, false, false, false]
    );
    // Every workload ID, but no other identity.
    assert_eq!(
        case("spiffe://*/ns/*/sa/*"),
        [true, true, true, true, false, false, false]
    );
}

#[test]
fn lone_star_is_any_mtls_peer() {
    let policy = mesh_policy(json!({
        "allow": [{"from": {"principals": ["*"]}, "paths": [{"prefix": "/internal/"}]}],
    }));
    assert_eq!(
        verdict(&policy, &from("GET", "/internal/x", ORDERS)),
        ALLOWED
    );
    // Any identity, also one that is no workload ID.
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/internal/x", "spiffe://example.org/host/db")
        ),
        ALLOWED
    );
    assert_eq!(
        verdict(&policy, &plaintext("GET", "/internal/x")),
        NOT_ALLOWED
    );
    assert_eq!(
        verdict(&policy, &from("GET", "/internal/x", "")),
        NOT_ALLOWED,
        "an empty identity is no identity"
    );

    // Istio's "require mTLS": deny `not_principals: ["*"]`.
    let policy = super::policy::policy(json!({
        "jwt": jwt_config(json!({})),
        "rules": {"deny": [{"from": {"not_principals": ["*"]}}]},
    }));
    let token = token();
    assert_eq!(
        verdict(&policy, &plaintext("GET", "/").bearer(&token)),
        DENIED
    );
    assert_eq!(
        verdict(&policy, &from("GET", "/", ORDERS).bearer(&token)),
        (Verdict::Allowed, Reason::Authenticated)
    );
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/", "spiffe://example.org/host/db").bearer(&token)
        ),
        (Verdict::Allowed, Reason::Authenticated)
    );
}

#[test]
fn not_principals() {
    let policy = mesh_policy(json!({
        "deny": [{
            "from": {"not_principals": [ORDERS, "cluster.local/ns/billing/*"]},
            "paths": [{"prefix": "/charge"}],
        }],
        "allow": [{"paths": [{"prefix": "/"}]}],
    }));
    let charge = |identity: Option<&str>| match identity {
        Some(identity) => verdict(&policy, &from("POST", "/charge", identity)),
        None => verdict(&policy, &plaintext("POST", "/charge")),
    };
    assert_eq!(charge(Some(ORDERS)), ALLOWED);
    assert_eq!(
        charge(Some("spiffe://cluster.local/ns/billing/sa/refunds")),
        ALLOWED
    );
    assert_eq!(
        charge(Some("spiffe://cluster.local/ns/shop/sa/web")),
        DENIED
    );
    // No identity is none of them: denied, as in Istio.
    assert_eq!(charge(None), DENIED);
    // An identity that is no workload ID is not one of them either.
    assert_eq!(charge(Some("spiffe://cluster.local/ns/billing")), DENIED);
    // The deny rule's other condition.
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/catalog", "spiffe://cluster.local/ns/shop/sa/web")
        ),
        ALLOWED
    );
}

#[test]
fn namespaces() {
    let identities = [
        Some(ORDERS),
        Some("spiffe://other.example/ns/shop/sa/web"),
        Some("spiffe://cluster.local/ns/payments-prod/sa/api"),
        Some("spiffe://cluster.local/ns/payments-dev/sa/api"),
        Some("spiffe://cluster.local/ns/shopping/sa/web"),
        Some("spiffe://cluster.local/ns/shop"),
        None,
    ];
    let allowed = |from: Value| {
        let policy = mesh_policy(json!({"allow": [{"from": from}]}));
        decisions(&policy, &identities)
            .into_iter()
            .map(|decision| decision == ALLOWED)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        allowed(json!({"namespaces": ["shop", "*-prod"]})),
        [true, true, true, false, false, false, false]
    );
    assert_eq!(
        allowed(json!({"namespaces": ["payments-*"]})),
        [false, false, true, true, false, false, false]
    );
    assert_eq!(
        allowed(json!({"namespaces": ["*"]})),
        [true, true, true, true, true, false, false]
    );
    // No namespace (plaintext, or no workload ID) is none of them.
    assert_eq!(
        allowed(json!({"not_namespaces": ["shop", "*-dev"]})),
        [false, false, true, false, true, true, true]
    );
    // Every list given must match.
    assert_eq!(
        allowed(json!({
            "namespaces": ["payments-*", "shop"],
            "not_namespaces": ["*-dev"],
            "not_principals": ["*/sa/web"],
        })),
        [true, false, true, false, false, false, false]
    );
    assert_eq!(
        allowed(json!({"principals": ["*"], "not_namespaces": ["shop"]})),
        [false, false, true, true, true, true, false]
    );
}

#[test]
fn principals_combine_with_tokens() {
    // A token and a peer identity: both conditions in one rule.
    let policy = policy(json!({
        "jwt": jwt_config(json!({})),
        "rules": {"allow": [{"from": {"principals": [ORDERS]}, "claims": {"sub": "user-7"}}]},
    }));
    let token = token();
    assert_eq!(
        verdict(&policy, &from("GET", "/", ORDERS).bearer(&token)),
        ALLOWED
    );
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/", "spiffe://cluster.local/ns/shop/sa/web").bearer(&token)
        ),
        (Verdict::Denied, Reason::NoAllowRule)
    );
    assert_eq!(
        verdict(&policy, &plaintext("GET", "/").bearer(&token)),
        (Verdict::Denied, Reason::NoAllowRule)
    );
    // Without `allow_missing`, a peer identity is no credential: 401 before any rule.
    assert_eq!(
        verdict(&policy, &from("GET", "/", ORDERS)),
        (Verdict::Unauthenticated, Reason::MissingToken)
    );
}

#[test]
fn the_peer_identity_is_read_once_and_only_when_needed() {
    let peer_reads = |request: &FakeRequest| {
        request
            .reads()
            .iter()
            .filter(|read| *read == "peer_identity")
            .count()
    };
    let policy = mesh_policy(json!({
        "deny": [
            {"from": {"principals": ["*/ns/attic/*"]}},
            {"from": {"not_namespaces": ["shop", "billing"]}},
        ],
        "allow": [
            {"from": {"principals": ["cluster.local/ns/billing/sa/*"]}},
            {"from": {"namespaces": ["shop"]}, "paths": [{"prefix": "/"}]},
        ],
    }));
    let request = from("GET", "/x", ORDERS);
    assert_eq!(verdict(&policy, &request), ALLOWED);
    assert_eq!(peer_reads(&request), 1, "fetched once for four rules");

    let unrelated = mesh_policy(json!({"allow": [{"paths": [{"prefix": "/"}]}]}));
    let request = from("GET", "/x", ORDERS);
    eval(&unrelated, &request);
    assert_eq!(peer_reads(&request), 0);
}

#[test]
fn config_errors_name_the_path() {
    let config = |rules: Value| json!({"jwt": jwt_config(json!({})), "rules": rules});
    let cases = [
        (
            json!({"allow": [{"paths": [{"prefix": "/"}]}, {"methods": ["GET"]}, {"from": {"principals": [ORDERS, "cluster.local/ns/shop"]}}]}),
            "rules.allow[2].from.principals[1]: `cluster.local/ns/shop`: 3 `/`-separated parts, expected 5; a principal is `<trust-domain>/ns/<namespace>/sa/<service-account>`",
        ),
        (
            json!({"deny": [{"from": {"not_principals": ["cluster.local/ns/sh*p/sa/orders"]}}]}),
            "rules.deny[0].from.not_principals[0]: `cluster.local/ns/sh*p/sa/orders`: `*` may stand for a whole segment, or begin or end the principal",
        ),
        (
            json!({"allow": [{"from": {"principals": ["*/shop/*"]}}]}),
            "rules.allow[0].from.principals[0]: `*/shop/*`: expected `ns` where `shop` is",
        ),
        (
            json!({"allow": [{"from": {"principals": ["cluster.local/ns//sa/orders"]}}]}),
            "rules.allow[0].from.principals[0]: `cluster.local/ns//sa/orders`: the namespace is empty",
        ),
        (
            json!({"allow": [{"from": {"principals": ["https://cluster.local/ns/shop/sa/orders"]}}]}),
            "rules.allow[0].from.principals[0]: `https://cluster.local/ns/shop/sa/orders`: `https://` is not a SPIFFE ID",
        ),
        (
            json!({"allow": [{"from": {"principals": ["spiffe://cluster.local/ns/shop/sa/orders?x=1"]}}]}),
            "rules.allow[0].from.principals[0]: `spiffe://cluster.local/ns/shop/sa/orders?x=1`: a SPIFFE ID has no query or fragment",
        ),
        (
            json!({"allow": [{"from": {"principals": [""]}}]}),
            "rules.allow[0].from.principals[0]: the principal is empty",
        ),
        (
            json!({"allow": [{"from": {"namespaces": ["shop", "shop/sa/orders"]}}]}),
            "rules.allow[0].from.namespaces[1]: `shop/sa/orders` is not a namespace",
        ),
        (
            json!({"allow": [{"from": {"not_namespaces": ["sh*p"]}}]}),
            "rules.allow[0].from.not_namespaces[0]: `sh*p`: `*` may only stand alone or begin or end the namespace",
        ),
        (
            json!({"allow": [{"from": {"principals": []}}]}),
            "rules.allow[0].from.principals: give at least one value",
        ),
        (
            json!({"allow": [{"from": {}}]}),
            "rules.allow[0].from: give at least one of `principals`",
        ),
    ];
    for (rules, expected) in cases {
        let err = try_policy(config(rules)).expect_err(expected);
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
    }
    // Unknown fields, such as Istio's camelCase spelling, are errors.
    let err = try_policy(config(
        json!({"allow": [{"from": {"notPrincipals": [ORDERS]}}]}),
    ))
    .expect_err("camelCase");
    assert!(err.contains("unknown field `notPrincipals`"), "{err}");
    // A rule with only `from` has a condition.
    let rules = json!({"allow": [{"from": {"principals": ["*"]}}]});
    assert!(try_policy(config(rules)).is_ok());
}

#[test]
fn mesh_only_policy_forbids_what_no_rule_allows() {
    // No `jwt`, no `api_keys`: the mTLS identity is the only credential there is, and a
    // request no allow rule takes is forbidden (403), not asked for a token (401).
    let policy = policy(json!({"rules": {"allow": [{"from": {"principals": [ORDERS]}}]}}));
    assert_eq!(verdict(&policy, &from("GET", "/", ORDERS)), ALLOWED);
    let forbidden = (Verdict::Denied, Reason::NoAllowRule);
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/", "spiffe://cluster.local/ns/shop/sa/web")
        ),
        forbidden
    );
    assert_eq!(verdict(&policy, &plaintext("GET", "/")), forbidden);
    // A deny-only policy lets the rest through.
    let policy = policy_deny_only();
    assert_eq!(
        verdict(
            &policy,
            &from("GET", "/", "spiffe://cluster.local/ns/sandbox/sa/x")
        ),
        DENIED
    );
    assert_eq!(
        verdict(&policy, &from("GET", "/", ORDERS)),
        (Verdict::Allowed, Reason::Authenticated)
    );
    // Without rules there is nothing to decide with.
    let err = try_policy(json!({})).expect_err("no rules, no credentials");
    assert!(err.contains("give `jwt`, `api_keys` or both"), "{err}");
}

fn policy_deny_only() -> Policy {
    policy(json!({"rules": {"deny": [{"from": {"namespaces": ["sandbox"]}}]}}))
}
