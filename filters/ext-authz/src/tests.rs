//! Unit tests of the configuration, the check request and the decisions, run natively on
//! `FakeRequest`.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::cell::Cell;
use std::time::Duration;

use weft_sdk::facts::FakeRequest;
use weft_sdk::{Action, CallError, CallResponse, EditError, LocalResponse};

use crate::config::{Config, Pattern, Settings};
use crate::decide::{
    Decision, Edit, ErrorKind, FAILURE_MODE_ALLOWED_HEADER, apply, check_request, decide,
};

fn settings(json: &str) -> Result<Settings, String> {
    let config: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Settings::from_config(config)
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> CallResponse {
    CallResponse {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn set(name: &str, value: &str) -> Edit {
    Edit::Set(name.to_owned(), value.as_bytes().to_vec())
}

fn remove(name: &str) -> Edit {
    Edit::Remove(name.to_owned())
}

/// Request header names for `decide` that must not be asked for.
fn never() -> Vec<String> {
    panic!("request header names read without a prefix pattern")
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn defaults() {
    let s = settings(r#"{"upstream": "authz"}"#).unwrap();
    assert_eq!(s.upstream, "authz");
    assert_eq!(s.path_prefix, "");
    assert_eq!(s.timeout, Duration::from_millis(200));
    assert_eq!(s.allowed_headers, ["authorization"]);
    assert!(s.headers_to_add.is_empty());
    assert!(s.upstream_headers.is_empty());
    assert_eq!(s.client_headers, None);
    assert!(!s.failure_mode_allow);
    assert_eq!(s.status_on_error, 403);
    assert_eq!(s.max_response_bytes, 8192);
}

#[test]
fn full_config() {
    let s = settings(
        r#"{
            "upstream": "authz",
            "path_prefix": "/check",
            "timeout": "1.5s",
            "allowed_headers": ["Authorization", "cookie", "x-request-id"],
            "headers_to_add": {"X-Ext-Authz": "1", "a-first": "yes"},
            "upstream_headers_from_auth": ["x-user-id", "X-Auth-*"],
            "client_headers_from_auth": ["www-authenticate", "x-auth-*"],
            "failure_mode_allow": true,
            "status_on_error": 503,
            "max_response_bytes": 4194304
        }"#,
    )
    .unwrap();
    assert_eq!(s.path_prefix, "/check");
    assert_eq!(s.timeout, Duration::from_millis(1500));
    assert_eq!(
        s.allowed_headers,
        ["authorization", "cookie", "x-request-id"]
    );
    assert_eq!(
        s.headers_to_add,
        owned(&[("a-first", "yes"), ("x-ext-authz", "1")])
    );
    assert_eq!(
        s.upstream_headers,
        [
            Pattern::Exact("x-user-id".to_owned()),
            Pattern::Prefix("x-auth-".to_owned())
        ]
    );
    // `location` is always added to a given list, as Envoy does; `www-authenticate` was listed.
    assert_eq!(
        s.client_headers,
        Some(vec![
            Pattern::Exact("www-authenticate".to_owned()),
            Pattern::Prefix("x-auth-".to_owned()),
            Pattern::Exact("location".to_owned()),
        ])
    );
    assert!(s.failure_mode_allow);
    assert_eq!(s.status_on_error, 503);
    assert_eq!(s.max_response_bytes, 4 * 1024 * 1024);
}

#[test]
fn client_list_always_has_challenge_and_location() {
    let s = settings(r#"{"upstream": "a", "client_headers_from_auth": []}"#).unwrap();
    assert_eq!(
        s.client_headers,
        Some(vec![
            Pattern::Exact("www-authenticate".to_owned()),
            Pattern::Exact("location".to_owned()),
        ])
    );
}

#[test]
fn headers_to_add_replace_allowed_headers() {
    let s = settings(
        r#"{"upstream": "a", "allowed_headers": ["authorization", "X-Tenant"],
            "headers_to_add": {"x-tenant": "fixed"}}"#,
    )
    .unwrap();
    assert_eq!(s.allowed_headers, ["authorization"]);
    let request = FakeRequest::get("/")
        .with_header("x-tenant", "client")
        .with_header("authorization", "Bearer t");
    let call = check_request(&s, &request);
    assert_eq!(
        call.headers,
        owned(&[("authorization", "Bearer t"), ("x-tenant", "fixed")])
    );
    assert!(!request.reads().contains(&"header x-tenant".to_owned()));
}

#[test]
fn empty_allowed_headers_send_none() {
    let s = settings(r#"{"upstream": "a", "allowed_headers": []}"#).unwrap();
    let request = FakeRequest::get("/").with_header("authorization", "Bearer t");
    assert!(check_request(&s, &request).headers.is_empty());
}

#[test]
fn rejected_values_name_their_field() {
    let cases = [
        (r#"{"upstream": ""}"#, "upstream: must not be empty"),
        (
            r#"{"upstream": "a", "path_prefix": "check"}"#,
            "path_prefix: \"check\" must start with `/`",
        ),
        (
            r#"{"upstream": "a", "path_prefix": "/check/"}"#,
            "path_prefix: \"/check/\" must not end with `/`: the request's path, which starts with `/`, follows it",
        ),
        (
            r#"{"upstream": "a", "path_prefix": "/a?b"}"#,
            "path_prefix: \"/a?b\" holds '?': only printable ASCII without `?` and `#` (percent-encode others)",
        ),
        (
            r#"{"upstream": "a", "path_prefix": "/a b"}"#,
            "path_prefix: \"/a b\" holds ' ': only printable ASCII without `?` and `#` (percent-encode others)",
        ),
        (
            r#"{"upstream": "a", "timeout": "soon"}"#,
            "timeout: invalid duration \"soon\": expected a number at byte 0; write a number and a unit, like 250ms, 1.5s or 1m30s",
        ),
        (
            r#"{"upstream": "a", "timeout": "0s"}"#,
            "timeout: invalid duration \"0s\": must be more than 0",
        ),
        (
            r#"{"upstream": "a", "timeout": "1500us"}"#,
            "timeout: invalid duration \"1500us\": must be whole milliseconds",
        ),
        (
            r#"{"upstream": "a", "timeout": "61s"}"#,
            "timeout: invalid duration \"61s\": must be at most 1m",
        ),
        (
            r#"{"upstream": "a", "allowed_headers": ["authorization", "cookie", "Host"]}"#,
            "allowed_headers[2]: \"Host\" is managed by the proxy and cannot be copied or set",
        ),
        (
            r#"{"upstream": "a", "allowed_headers": ["content-length"]}"#,
            "allowed_headers[0]: \"content-length\" is managed by the proxy and cannot be copied or set",
        ),
        (
            r#"{"upstream": "a", "allowed_headers": ["x ray"]}"#,
            "allowed_headers[0]: \"x ray\" is not a valid header name",
        ),
        (
            r#"{"upstream": "a", "allowed_headers": ["cookie", "Cookie"]}"#,
            "allowed_headers[1]: \"Cookie\" is listed twice (header names are case-insensitive)",
        ),
        (
            r#"{"upstream": "a", "allowed_headers": ["x-*"]}"#,
            "allowed_headers[0]: \"x-*\": list exact header names here (no `*` prefixes)",
        ),
        (
            r#"{"upstream": "a", "headers_to_add": {"connection": "close"}}"#,
            "headers_to_add.connection: \"connection\" is managed by the proxy and cannot be copied or set",
        ),
        (
            r#"{"upstream": "a", "headers_to_add": {"x-a": "1\r\nx-b: 2"}}"#,
            "headers_to_add.x-a: the value holds a control character (CR, LF, NUL, ...)",
        ),
        (
            r#"{"upstream": "a", "headers_to_add": {"X-A": "1", "x-a": "2"}}"#,
            "headers_to_add.x-a: given twice (header names are case-insensitive)",
        ),
        (
            r#"{"upstream": "a", "upstream_headers_from_auth": ["x-user", "transfer-encoding"]}"#,
            "upstream_headers_from_auth[1]: \"transfer-encoding\" is managed by the proxy and cannot be copied or set",
        ),
        (
            r#"{"upstream": "a", "upstream_headers_from_auth": ["*"]}"#,
            "upstream_headers_from_auth[0]: `*` alone matches every header; give a prefix, like `x-auth-*`",
        ),
        (
            r#"{"upstream": "a", "upstream_headers_from_auth": ["x-*-id"]}"#,
            "upstream_headers_from_auth[0]: \"x-*-id\": `*` may only end a prefix, like `x-auth-*`",
        ),
        (
            r#"{"upstream": "a", "upstream_headers_from_auth": ["x y*"]}"#,
            "upstream_headers_from_auth[0]: \"x y*\" is neither a header name nor a prefix ending in `*`",
        ),
        (
            r#"{"upstream": "a", "upstream_headers_from_auth": ["x-auth-*", "X-Auth-*"]}"#,
            "upstream_headers_from_auth[1]: \"x-auth-*\" is listed twice (header names are case-insensitive)",
        ),
        (
            r#"{"upstream": "a", "client_headers_from_auth": ["www-authenticate", "content-length"]}"#,
            "client_headers_from_auth[1]: \"content-length\" is managed by the proxy and cannot be copied or set",
        ),
        (
            r#"{"upstream": "a", "status_on_error": 99}"#,
            "status_on_error: must be in 200..=599, got 99",
        ),
        (
            r#"{"upstream": "a", "status_on_error": 101}"#,
            "status_on_error: must be in 200..=599, got 101",
        ),
        (
            r#"{"upstream": "a", "status_on_error": 600}"#,
            "status_on_error: must be in 200..=599, got 600",
        ),
        (
            r#"{"upstream": "a", "max_response_bytes": 0}"#,
            "max_response_bytes: must be in 1..=4194304 (4 MiB), got 0",
        ),
        (
            r#"{"upstream": "a", "max_response_bytes": 4194305}"#,
            "max_response_bytes: must be in 1..=4194304 (4 MiB), got 4194305",
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(settings(json).unwrap_err(), expected, "{json}");
    }
}

#[test]
fn shape_errors_come_from_serde() {
    // The SDK prefixes these with the field's path (``config field `x`: ...``).
    let missing = settings("{}").unwrap_err();
    assert!(missing.contains("missing field `upstream`"), "{missing}");
    let unknown = settings(r#"{"upstream": "a", "failure_mode_alow": true}"#).unwrap_err();
    assert!(
        unknown.contains("unknown field `failure_mode_alow`"),
        "{unknown}"
    );
    let number = settings(r#"{"upstream": "a", "headers_to_add": {"x-a": 1}}"#).unwrap_err();
    assert!(number.contains("invalid type: integer `1`"), "{number}");
}

// ---------------------------------------------------------------------------------------------
// The check request

#[test]
fn check_request_carries_method_path_and_configured_headers() {
    let s = settings(
        r#"{"upstream": "authz", "path_prefix": "/check", "timeout": "250ms",
            "max_response_bytes": 1000,
            "allowed_headers": ["authorization", "Cookie", "x-request-id"],
            "headers_to_add": {"x-ext-authz": "1"}}"#,
    )
    .unwrap();
    let request = FakeRequest::new("POST", "/orders/7?verbose=1")
        .with_header("Cookie", "a=1")
        .with_header("x-other", "not sent")
        .with_header("authorization", "Bearer t")
        .with_header("cookie", "b=2");
    let call = check_request(&s, &request);
    assert_eq!(call.upstream, "authz");
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/check/orders/7?verbose=1");
    assert_eq!(
        call.headers,
        owned(&[
            ("authorization", "Bearer t"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-ext-authz", "1"),
        ])
    );
    assert!(call.body.is_empty());
    assert_eq!(call.timeout, Some(Duration::from_millis(250)));
    assert_eq!(call.max_response_bytes, Some(1000));
    // Only what the check needs is read: `x-request-id` is absent and not sent.
    assert_eq!(
        request.reads(),
        [
            "path",
            "method",
            "header authorization",
            "header cookie",
            "header x-request-id"
        ]
    );
}

#[test]
fn check_request_defaults() {
    let s = settings(r#"{"upstream": "authz"}"#).unwrap();
    let request = FakeRequest::get("/").with_header("cookie", "a=1");
    let call = check_request(&s, &request);
    assert_eq!((call.method.as_str(), call.path.as_str()), ("GET", "/"));
    assert!(call.headers.is_empty());
    assert_eq!(call.timeout, Some(Duration::from_millis(200)));
    assert_eq!(call.max_response_bytes, Some(8192));
}

// ---------------------------------------------------------------------------------------------
// Allowing answers

#[test]
fn allow_copies_only_listed_headers_with_prefix_matching() {
    let s =
        settings(r#"{"upstream": "a", "upstream_headers_from_auth": ["x-user-id", "x-auth-*"]}"#)
            .unwrap();
    let ok = answer(
        200,
        &[
            ("x-user-id", "alice"),
            ("X-Auth-Roles", "admin"),
            ("x-auth-roles", "ops"),
            ("x-authz-other", "no: `x-auth-*` needs the dash"),
            ("x-user", "no: not listed"),
            ("content-type", "text/plain"),
            ("content-length", "0"),
            (FAILURE_MODE_ALLOWED_HEADER, "true"),
        ],
        "ignored",
    );
    let names = || {
        vec![
            "x-auth-tenant".to_owned(),
            "x-auth-roles".to_owned(),
            "accept".to_owned(),
        ]
    };
    let decision = decide(&s, &Ok(ok), names);
    assert_eq!(
        decision,
        Decision::Allowed(vec![
            // The client's `x-auth-tenant` is dropped: the service did not set it.
            remove("x-auth-tenant"),
            set("x-user-id", "alice"),
            set("x-auth-roles", "admin"),
            Edit::Append("x-auth-roles".to_owned(), b"ops".to_vec()),
        ])
    );
    assert_eq!(decision.label(), "allowed");
    assert_eq!(decision.clone().into_action(), Action::Continue);

    // Applied to a request whose client sent its own values.
    let request = FakeRequest::get("/")
        .with_header("x-user-id", "mallory")
        .with_header("x-auth-roles", "root")
        .with_header("x-auth-tenant", "evil")
        .with_header("accept", "*/*");
    apply(decision.edits(), &request).unwrap();
    assert_eq!(request.header_texts("x-user-id"), ["alice"]);
    assert_eq!(request.header_texts("x-auth-roles"), ["admin", "ops"]);
    assert!(request.header_texts("x-auth-tenant").is_empty());
    assert_eq!(request.header_texts("accept"), ["*/*"]);
}

#[test]
fn allow_removes_client_copies_of_exact_names_the_answer_lacks() {
    let s = settings(r#"{"upstream": "a", "upstream_headers_from_auth": ["x-user-id"]}"#).unwrap();
    let decision = decide(&s, &Ok(answer(204, &[], "")), never);
    assert_eq!(decision, Decision::Allowed(vec![remove("x-user-id")]));
    let request = FakeRequest::get("/").with_header("x-user-id", "mallory");
    apply(decision.edits(), &request).unwrap();
    assert!(request.header_texts("x-user-id").is_empty());
}

#[test]
fn allow_without_upstream_headers_edits_nothing() {
    let s = settings(r#"{"upstream": "a"}"#).unwrap();
    let ok = answer(200, &[("x-user-id", "alice")], "");
    assert_eq!(decide(&s, &Ok(ok), never), Decision::Allowed(vec![]));
}

#[test]
fn allow_reads_request_header_names_only_for_prefixes() {
    let s = settings(r#"{"upstream": "a", "upstream_headers_from_auth": ["x-auth-*"]}"#).unwrap();
    let asked = Cell::new(0);
    let names = || {
        asked.set(asked.get() + 1);
        Vec::new()
    };
    decide(&s, &Ok(answer(200, &[], "")), names);
    assert_eq!(asked.get(), 1);
    // Denials never read them.
    let names = || {
        asked.set(asked.get() + 1);
        Vec::new()
    };
    decide(&s, &Ok(answer(403, &[], "")), names);
    assert_eq!(asked.get(), 1);
}

#[test]
fn allow_removes_a_client_sent_failure_marker_when_failure_mode_allow() {
    let s = settings(r#"{"upstream": "a", "failure_mode_allow": true}"#).unwrap();
    let decision = decide(&s, &Ok(answer(200, &[], "")), never);
    assert_eq!(
        decision,
        Decision::Allowed(vec![remove(FAILURE_MODE_ALLOWED_HEADER)])
    );
    let request = FakeRequest::get("/").with_header(FAILURE_MODE_ALLOWED_HEADER, "true");
    apply(decision.edits(), &request).unwrap();
    assert!(request.header_texts(FAILURE_MODE_ALLOWED_HEADER).is_empty());
}

#[test]
fn every_2xx_allows() {
    let s = settings(r#"{"upstream": "a"}"#).unwrap();
    for status in [200, 201, 204, 299] {
        let decision = decide(&s, &Ok(answer(status, &[], "")), never);
        assert_eq!(decision.label(), "allowed", "{status}");
    }
}

#[test]
fn a_refused_set_removes_the_clients_value() {
    let request = FakeRequest::get("/")
        .with_header("x-user-id", "mallory")
        .with_refusal("x-user-id", EditError::InvalidValue);
    let result = apply(&[set("x-user-id", "alice")], &request);
    assert_eq!(
        result,
        Err(("x-user-id".to_owned(), EditError::InvalidValue))
    );
    // The refusal applies to the removal too in the fake; the proxy only refuses what is
    // invalid, which a removal by name never is.
    let request = FakeRequest::get("/").with_header("x-user-id", "mallory");
    apply(&[set("x-user-id", "alice\n")], &request).unwrap_err();
    assert!(request.header_texts("x-user-id").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Denying answers

#[test]
fn deny_forwards_status_body_and_headers() {
    let s = settings(r#"{"upstream": "a"}"#).unwrap();
    let no = answer(
        401,
        &[
            ("www-authenticate", "Bearer realm=\"shop\""),
            ("content-type", "application/json"),
            ("content-length", "16"),
            ("Set-Cookie", "a=1"),
            ("set-cookie", "b=2"),
        ],
        "{\"error\":\"no\"}\n",
    );
    let decision = decide(&s, &Ok(no), never);
    let expected = LocalResponse::new(401)
        .header("www-authenticate", "Bearer realm=\"shop\"")
        .header("content-type", "application/json")
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .body("{\"error\":\"no\"}\n");
    assert_eq!(decision, Decision::Denied(expected.clone()));
    assert_eq!(decision.label(), "denied");
    assert!(decision.edits().is_empty());
    assert_eq!(decision.into_action(), Action::Respond(expected));
}

#[test]
fn deny_with_client_list_sends_listed_headers_challenge_and_location() {
    let s = settings(r#"{"upstream": "a", "client_headers_from_auth": ["x-auth-*"]}"#).unwrap();
    let redirect = answer(
        302,
        &[
            ("location", "https://login.example/?next=%2F"),
            ("x-auth-reason", "expired"),
            ("content-type", "text/html"),
            ("x-internal", "secret"),
        ],
        "",
    );
    assert_eq!(
        decide(&s, &Ok(redirect), never),
        Decision::Denied(
            LocalResponse::new(302)
                .header("location", "https://login.example/?next=%2F")
                .header("x-auth-reason", "expired")
        )
    );
    let forbidden = answer(
        403,
        &[
            ("www-authenticate", "Bearer error=\"insufficient_scope\""),
            ("x-internal", "secret"),
        ],
        "no\n",
    );
    assert_eq!(
        decide(&s, &Ok(forbidden), never),
        Decision::Denied(
            LocalResponse::new(403)
                .header("www-authenticate", "Bearer error=\"insufficient_scope\"")
                .body("no\n")
        )
    );
}

#[test]
fn deny_ignores_failure_mode_allow() {
    // An answer is a decision, not a failure: failure_mode_allow does not let it through.
    let s = settings(r#"{"upstream": "a", "failure_mode_allow": true}"#).unwrap();
    let decision = decide(&s, &Ok(answer(403, &[], "")), never);
    assert_eq!(decision, Decision::Denied(LocalResponse::new(403)));
}

// ---------------------------------------------------------------------------------------------
// Failed checks

/// Every failure, with its kind, label and body.
fn failures() -> Vec<(Result<CallResponse, CallError>, ErrorKind, &'static str)> {
    vec![
        (
            Err(CallError::UnknownUpstream("authz".to_owned())),
            ErrorKind::UnknownUpstream,
            "ext-authz: authorization service not found\n",
        ),
        (
            Err(CallError::InvalidRequest("path \"x\" ...".to_owned())),
            ErrorKind::InvalidRequest,
            "ext-authz: authorization check could not be sent\n",
        ),
        (
            Err(CallError::Timeout),
            ErrorKind::Timeout,
            "ext-authz: authorization service timed out\n",
        ),
        (
            Err(CallError::ResponseTooLarge),
            ErrorKind::ResponseTooLarge,
            "ext-authz: authorization answer too large\n",
        ),
        (
            Err(CallError::TooManyCalls),
            ErrorKind::TooManyCalls,
            "ext-authz: too many authorization checks in flight\n",
        ),
        (
            Err(CallError::Unavailable(
                "connection refused (10.0.0.9:8080)".to_owned(),
            )),
            ErrorKind::Unavailable,
            "ext-authz: authorization service unavailable\n",
        ),
        (
            Ok(answer(500, &[("x-debug", "stack")], "panic at db.rs:12")),
            ErrorKind::ServerError,
            "ext-authz: authorization service failed\n",
        ),
        (
            Ok(answer(503, &[], "")),
            ErrorKind::ServerError,
            "ext-authz: authorization service failed\n",
        ),
    ]
}

#[test]
fn failed_checks_are_denied_with_status_on_error() {
    for status_on_error in [None, Some(503)] {
        let json = match status_on_error {
            None => r#"{"upstream": "a", "upstream_headers_from_auth": ["x-user-id"]}"#.to_owned(),
            Some(s) => format!(r#"{{"upstream": "a", "status_on_error": {s}}}"#),
        };
        let s = settings(&json).unwrap();
        for (result, kind, body) in failures() {
            let decision = decide(&s, &result, never);
            let expected = LocalResponse::new(status_on_error.unwrap_or(403))
                .header("content-type", "text/plain")
                .body(body);
            assert_eq!(
                decision,
                Decision::ErrorDenied(kind, expected.clone()),
                "{result:?}"
            );
            assert_eq!(decision.label(), "error_denied");
            assert!(decision.edits().is_empty());
            assert_eq!(decision.into_action(), Action::Respond(expected));
        }
    }
}

#[test]
fn failed_checks_go_on_with_the_marker_when_failure_mode_allow() {
    let s = settings(
        r#"{"upstream": "a", "failure_mode_allow": true,
            "upstream_headers_from_auth": ["x-user-id", "x-auth-*"]}"#,
    )
    .unwrap();
    for (result, kind, _) in failures() {
        let names = || vec!["x-auth-roles".to_owned(), "accept".to_owned()];
        let decision = decide(&s, &result, names);
        assert_eq!(
            decision,
            Decision::ErrorAllowed(
                kind,
                vec![
                    // No answer to trust: the client's values of these headers go.
                    remove("x-user-id"),
                    remove("x-auth-roles"),
                    set(FAILURE_MODE_ALLOWED_HEADER, "true"),
                ]
            ),
            "{result:?}"
        );
        assert_eq!(decision.label(), "error_allowed");
        let request = FakeRequest::get("/")
            .with_header("x-user-id", "mallory")
            .with_header(FAILURE_MODE_ALLOWED_HEADER, "false");
        apply(decision.edits(), &request).unwrap();
        assert!(request.header_texts("x-user-id").is_empty());
        assert_eq!(request.header_texts(FAILURE_MODE_ALLOWED_HEADER), ["true"]);
        assert_eq!(decision.into_action(), Action::Continue);
    }
}

#[test]
fn error_kind_labels() {
    let labels: Vec<&str> = failures().iter().map(|(_, kind, _)| kind.label()).collect();
    assert_eq!(
        labels,
        [
            "unknown_upstream",
            "invalid_request",
            "timeout",
            "response_too_large",
            "too_many_calls",
            "unavailable",
            "server_error",
            "server_error"
        ]
    );
    assert_eq!(ErrorKind::Other.label(), "other");
}
