//! The header-router filter (`filters/header-router`): ordered rules matching path, method,
//! headers and query; the chosen upstream (one, or a weighted, optionally sticky split); header
//! edits both ways; decisions counted; config errors naming the field.
//!
//! Harness tests run the filter in-process (each match kind, statistics over many calls); the
//! end-to-end tests go through the proxy to real upstreams, which report what they received.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::StatusCode;
use serde_json::{Value, json};
use weft_runtime::LoadError;
use weft_tests::harness::{Decision, Harness, TestRequest};
use weft_tests::{Proto, Scrape, Upstream, get, get_with, guests, proxy_start_error, start_proxy};

use crate::{filter, one_route};

const DECISIONS: &str = "weft_filter_header_router_decisions_total";

fn load(config: Value) -> Harness {
    Harness::load("router", guests::HEADER_ROUTER, config).expect("the config is valid")
}

/// Runs the hook on `request`, which must continue; returns the upstream it goes to now.
fn route(harness: &Harness, request: &mut TestRequest) -> String {
    let verdict = harness.on_request(request).expect("the filter never fails");
    assert_eq!(
        Decision::from(&verdict),
        Decision::Continue,
        "the router never answers itself"
    );
    request
        .chosen_upstream()
        .expect("a routed request has an upstream")
        .to_owned()
}

/// [`route`] for a request built in place. The harness route's upstream is `backend`: that is
/// where a request no rule matched goes.
fn upstream_for(harness: &Harness, mut request: TestRequest) -> String {
    route(harness, &mut request)
}

fn decisions(scrape: &Scrape, rule: &str, upstream: &str) -> f64 {
    scrape
        .value(DECISIONS, &[("rule", rule), ("upstream", upstream)])
        .unwrap_or(0.0)
}

// ----- In-process harness -----

#[test]
fn path_matches_exact_prefix_and_regex_without_the_query() {
    let harness = load(json!({ "rules": [
        { "name": "exact", "match": { "path": { "exact": "/healthz" } }, "upstream": "exact" },
        { "name": "prefix", "match": { "path": { "prefix": "/api/" } }, "upstream": "prefix" },
        { "name": "regex", "match": { "path": { "regex": "/users/[0-9]+" } }, "upstream": "regex" }
    ] }));
    let cases = [
        ("/healthz?probe=1", "exact"),
        ("/healthz/", "backend"),
        ("/api/users", "prefix"),
        ("/api", "backend"),
        ("/users/42?tab=1", "regex"),
        // The whole path must match, as with Envoy's safe_regex.
        ("/users/42/posts", "backend"),
        ("/v2/users/42", "backend"),
    ];
    for (target, expected) in cases {
        assert_eq!(
            upstream_for(&harness, TestRequest::get(target)),
            expected,
            "{target}"
        );
    }
}

#[test]
fn header_matches_exact_prefix_regex_present_and_absent() {
    let harness = load(json!({ "rules": [
        { "match": { "headers": [{ "name": "X-Exact", "exact": "true" }] }, "upstream": "exact" },
        { "match": { "headers": [{ "name": "x-prefix", "prefix": "team-" }] }, "upstream": "prefix" },
        { "match": { "headers": [{ "name": "x-regex", "regex": "v[0-9]+" }] }, "upstream": "regex" },
        { "match": { "headers": [{ "name": "x-present", "present": true }] }, "upstream": "present" },
        { "match": { "headers": [{ "name": "x-absent", "present": false }] }, "upstream": "absent" }
    ] }));
    // Requests that must match nothing carry `x-absent`, so that the last rule passes too.
    let request = |headers: &[(&str, &str)]| {
        headers
            .iter()
            .fold(TestRequest::get("/"), |request, (name, value)| {
                request.header(name, value)
            })
    };
    let cases: [(&[(&str, &str)], &str); 12] = [
        (&[("x-exact", "true")], "exact"),
        (&[("x-exact", "True"), ("x-absent", "1")], "backend"),
        // Any value of a repeated header.
        (&[("x-exact", "false"), ("x-exact", "true")], "exact"),
        (&[("x-prefix", "team-7")], "prefix"),
        (&[("x-prefix", "team"), ("x-absent", "1")], "backend"),
        (&[("x-regex", "v12")], "regex"),
        (&[("x-regex", "v12-rc"), ("x-absent", "1")], "backend"),
        (&[("x-present", "")], "present"),
        (&[("x-absent", "")], "backend"),
        (&[], "absent"),
        (&[("x-other", "1")], "absent"),
        (&[("x-absent", "1"), ("x-other", "1")], "backend"),
    ];
    for (headers, expected) in cases {
        assert_eq!(
            upstream_for(&harness, request(headers)),
            expected,
            "{headers:?}"
        );
    }
}

#[test]
fn method_and_query_matches_decode_percent_encoding() {
    let harness = load(json!({ "rules": [
        { "match": { "query": [{ "name": "version", "exact": "2" }] }, "upstream": "exact" },
        // Names and values are percent-decoded, `+` is a space.
        { "match": { "query": [{ "name": "user id", "exact": "a&b c" }] }, "upstream": "decoded" },
        { "match": { "query": [{ "name": "q", "exact": "é" }] }, "upstream": "utf8" },
        { "match": { "query": [{ "name": "v", "regex": "[0-9]{2}" }] }, "upstream": "regex" },
        { "match": { "query": [{ "name": "raw", "exact": "100%zz" }] }, "upstream": "malformed" },
        { "match": { "query": [{ "name": "debug", "present": true }] }, "upstream": "present" },
        { "match": { "query": [{ "name": "strict", "present": false }] }, "upstream": "absent" }
    ] }));
    // Requests that must match nothing carry `strict`, so that the last rule passes too.
    let cases = [
        ("/?a=1&version=2", "exact"),
        ("/?version=20&strict", "backend"),
        ("/?version&strict", "backend"),
        ("/?user%20id=a%26b+c", "decoded"),
        ("/?q=%C3%A9", "utf8"),
        ("/?v=%34%32", "regex"),
        ("/?v=423&strict", "backend"),
        // Malformed escapes are compared literally, never a failure.
        ("/?raw=100%zz", "malformed"),
        ("/?debug", "present"),
        ("/?nodebug=1&strict=1", "backend"),
        ("/?x=1", "absent"),
        ("/", "absent"),
    ];
    for (target, expected) in cases {
        assert_eq!(
            upstream_for(&harness, TestRequest::get(target)),
            expected,
            "{target}"
        );
    }

    let methods = harness
        .with_config(
            json!({ "rules": [{ "match": { "methods": ["GET", "HEAD"] }, "upstream": "hit" }] }),
        )
        .expect("the config is valid");
    assert_eq!(upstream_for(&methods, TestRequest::new("HEAD", "/")), "hit");
    assert_eq!(upstream_for(&methods, TestRequest::new("GET", "/")), "hit");
    assert_eq!(
        upstream_for(&methods, TestRequest::new("POST", "/")),
        "backend"
    );
}

#[test]
fn first_match_wins_and_no_match_keeps_the_route_upstream() {
    let harness = load(json!({ "rules": [
        { "name": "beta-users", "match": { "headers": [{ "name": "x-beta", "exact": "true" }] }, "upstream": "beta" },
        { "name": "api", "match": { "path": { "prefix": "/api/" } }, "upstream": "api" },
        { "name": "never", "match": { "path": { "prefix": "/api/v2/" } }, "upstream": "never" }
    ] }));
    let beta = || TestRequest::get("/api/v2/x").header("x-beta", "true");
    assert_eq!(upstream_for(&harness, beta()), "beta");
    assert_eq!(upstream_for(&harness, TestRequest::get("/api/v2/x")), "api");
    assert_eq!(upstream_for(&harness, TestRequest::get("/web")), "backend");
    assert_eq!(
        upstream_for(&harness, TestRequest::get("/web").upstream("other-route")),
        "other-route"
    );

    let scrape = harness.scrape();
    assert_eq!(decisions(&scrape, "beta-users", "beta"), 1.0);
    assert_eq!(decisions(&scrape, "api", "api"), 1.0);
    assert_eq!(decisions(&scrape, "none", "backend"), 1.0);
    assert_eq!(decisions(&scrape, "none", "other-route"), 1.0);
    assert_eq!(scrape.value(DECISIONS, &[("rule", "never")]), None);

    let config = json!({
        "rules": [{ "name": "api", "match": { "path": { "prefix": "/api/" } }, "upstream": "api" }],
        "default": { "upstream": "fallback", "response_headers": { "add": { "x-route": "default" } } }
    });
    let with_default = harness.with_config(config).expect("the config is valid");
    let mut request = TestRequest::get("/web");
    assert_eq!(route(&with_default, &mut request), "fallback");
    assert_eq!(request.added_response_header("x-route"), Some("default"));
    assert_eq!(
        decisions(&with_default.scrape(), "default", "fallback"),
        1.0
    );
}

#[test]
fn request_header_edits_and_response_headers() {
    let harness = load(json!({ "rules": [{
        "name": "beta-users",
        "match": { "headers": [{ "name": "x-beta", "exact": "true" }] },
        "upstream": "app-beta",
        "request_headers": {
            "add": { "x-routed-by": "header-router", "x-tag": "b" },
            "set": { "x-env": "beta" },
            "remove": ["x-internal"]
        },
        "response_headers": { "add": { "x-upstream-choice": "beta" } }
    }] }));
    let mut request = TestRequest::get("/")
        .header("x-beta", "true")
        .header("x-env", "prod")
        .header("x-env", "staging")
        .header("x-internal", "secret")
        .header("x-tag", "a");
    assert_eq!(route(&harness, &mut request), "app-beta");
    let values = |name: &str| -> Vec<String> {
        request
            .head
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    assert_eq!(values("x-env"), ["beta"], "set replaces every value");
    assert_eq!(values("x-tag"), ["a", "b"], "add appends");
    assert_eq!(values("x-routed-by"), ["header-router"]);
    assert!(values("x-internal").is_empty(), "removed");
    assert_eq!(
        request.added_response_header("x-upstream-choice"),
        Some("beta")
    );

    // Not matched: untouched.
    let mut request = TestRequest::get("/").header("x-internal", "secret");
    assert_eq!(route(&harness, &mut request), "backend");
    assert_eq!(request.header_value("x-internal"), Some("secret"));
    assert_eq!(request.added_response_header("x-upstream-choice"), None);
}

/// A 50/50 split between `blue` and `green`, sticky on `sticky`.
fn blue_green(sticky: Value) -> Value {
    json!({ "rules": [{
        "name": "bg",
        "split": [{ "upstream": "blue", "weight": 50 }, { "upstream": "green", "weight": 50 }],
        "sticky": sticky
    }] })
}

#[test]
fn sticky_header_keeps_each_user_on_one_upstream_across_instances() {
    let config = blue_green(json!({ "header": "x-user" }));
    let harness = load(config.clone());
    let mut first_choice = HashMap::new();
    for _ in 0..20 {
        for user in 0..40 {
            let user = format!("user-{user}");
            let upstream = upstream_for(&harness, TestRequest::get("/").header("x-user", &user));
            let first = first_choice.entry(user.clone()).or_insert(upstream.clone());
            assert_eq!(*first, upstream, "{user} moved");
        }
    }
    let on_blue = first_choice.values().filter(|u| *u == "blue").count();
    // 40 users at 50/50: all on one side has probability 2^-39.
    assert!(
        (1..40).contains(&on_blue),
        "{on_blue} of 40 users on blue: the hash must spread them"
    );

    // Another runtime (as another proxy, or after a restart) places everyone the same way.
    let restarted = load(config);
    for (user, upstream) in &first_choice {
        assert_eq!(
            &upstream_for(&restarted, TestRequest::get("/").header("x-user", user)),
            upstream,
            "{user}"
        );
    }
}

#[test]
fn sticky_cookie_reads_the_named_cookie() {
    let by_cookie = load(blue_green(json!({ "cookie": "session" })));
    let by_header = by_cookie
        .with_config(blue_green(json!({ "header": "x-user" })))
        .expect("the config is valid");
    for user in 0..40 {
        let session = format!("s-{user}");
        // The same value hashes the same way wherever it comes from.
        let expected = upstream_for(&by_header, TestRequest::get("/").header("x-user", &session));
        for _ in 0..5 {
            let request = TestRequest::get("/")
                .header("cookie", "theme=dark")
                .header("cookie", &format!("lang=en; session={session}; x=1"));
            assert_eq!(upstream_for(&by_cookie, request), expected, "{session}");
        }
    }
}

#[test]
fn split_follows_the_weights_without_sticky() {
    let harness = load(json!({ "rules": [{
        "name": "canary",
        "split": [{ "upstream": "app", "weight": 90 }, { "upstream": "app-canary", "weight": 10 }],
        "sticky": { "header": "x-user" }
    }] }));
    const CALLS: usize = 2000;
    let mut canary = 0;
    for _ in 0..CALLS {
        // No x-user header: each request is placed at random.
        if upstream_for(&harness, TestRequest::get("/")) == "app-canary" {
            canary += 1;
        }
    }
    // Expected 200, standard deviation ~13.4: 100..=300 fails with probability far below 1e-9.
    assert!(
        (100..=300).contains(&canary),
        "{canary} of {CALLS} on the canary, expected about 10%"
    );
    let scrape = harness.scrape();
    assert_eq!(decisions(&scrape, "canary", "app-canary"), canary as f64);
    assert_eq!(decisions(&scrape, "canary", "app"), (CALLS - canary) as f64);
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (
            json!({ "rules": [
                { "upstream": "a" },
                { "upstream": "a" },
                { "match": { "path": { "regex": "/api/(v1" } }, "upstream": "a" }
            ] }),
            "config field `rules[2].match.path.regex`: invalid regex",
        ),
        (
            json!({ "rules": [{ "match": { "headers": [{ "name": "x", "regex": "[a-" }] }, "upstream": "a" }] }),
            "config field `rules[0].match.headers[0].regex`: invalid regex",
        ),
        (
            json!({ "rules": [{ "split": [] }] }),
            "config field `rules[0].split`: must list at least one upstream",
        ),
        (
            json!({ "rules": [{ "split": [{ "upstream": "a", "weight": 0 }] }] }),
            "config field `rules[0].split`: the weights add up to 0",
        ),
        (
            json!({ "rules": [{ "upstream": "a", "split": [{ "upstream": "b", "weight": 1 }] }] }),
            "config field `rules[0]`: give either `upstream` or `split`, not both",
        ),
        (
            json!({ "rules": [{ "match": { "pth": { "prefix": "/" } }, "upstream": "a" }] }),
            "config field `rules[0].match`: unknown field `pth`",
        ),
        (
            json!({ "rules": [{ "match": { "path": { "prefix": "/", "exact": "/" } }, "upstream": "a" }] }),
            "config field `rules[0].match.path`: give exactly one of `exact`, `prefix` or `regex`",
        ),
        (
            json!({ "rules": [{ "split": [{ "upstream": "a", "weight": -1 }] }] }),
            "config field `rules[0].split[0].weight`: invalid value",
        ),
        (
            json!({ "rules": [{ "match": { "methods": ["get"] }, "upstream": "a" }] }),
            "config field `rules[0].match.methods[0]`: \"get\": methods are case-sensitive",
        ),
        (
            json!({ "default": { "sticky": { "cookie": "s" } } }),
            "config field `default.sticky`: only applies to a `split`",
        ),
        (json!(null), "config field `rules`: at least one rule"),
    ];
    let base = load(json!({ "default": { "upstream": "app" } }));
    for (config, expected) in cases {
        match base.with_config(config.clone()) {
            Err(LoadError::Rejected(message)) => {
                assert!(message.contains(expected), "{config}:\n{message}");
            }
            Err(other) => panic!("{config}: expected a rejection, got {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

// ----- Through the proxy -----

/// A proxy whose one route goes to `app`, running the router with `config`, with upstreams
/// `app`, `beta` and `canary`.
fn three_upstreams(app: &Upstream, beta: &Upstream, canary: &Upstream, config: &Value) -> String {
    let mut yaml = one_route(
        app.addr(),
        &[filter(
            "router",
            guests::HEADER_ROUTER,
            // JSON is YAML.
            &format!("config: {config}"),
        )],
    );
    let extra: [(&str, SocketAddr); 2] = [("beta", beta.addr()), ("canary", canary.addr())];
    for (name, addr) in extra {
        yaml.push_str(&format!("  - name: {name}\n    endpoints: [\"{addr}\"]\n"));
    }
    yaml
}

struct Upstreams {
    app: Upstream,
    beta: Upstream,
    canary: Upstream,
}

impl Upstreams {
    async fn start() -> anyhow::Result<Self> {
        Ok(Upstreams {
            app: Upstream::start().await?,
            beta: Upstream::start().await?,
            canary: Upstream::start().await?,
        })
    }

    fn yaml(&self, config: &Value) -> String {
        three_upstreams(&self.app, &self.beta, &self.canary, config)
    }

    /// Requests seen by `[app, beta, canary]`.
    fn counts(&self) -> [usize; 3] {
        [
            self.app.requests(),
            self.beta.requests(),
            self.canary.requests(),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_routes_to_the_beta_upstream_with_header_edits() -> anyhow::Result<()> {
    let upstreams = Upstreams::start().await?;
    let config = json!({ "rules": [{
        "name": "beta-users",
        "match": { "path": { "prefix": "/api/" }, "headers": [{ "name": "x-beta", "exact": "true" }] },
        "upstream": "beta",
        "request_headers": {
            "add": { "x-routed-by": "header-router" },
            "set": { "x-env": "beta" },
            "remove": ["x-internal"]
        },
        "response_headers": { "add": { "x-upstream-choice": "beta" } }
    }] });
    let proxy = start_proxy(&upstreams.yaml(&config)).await?;
    let mut expected = [0, 0, 0];
    for proto in Proto::ALL {
        let headers = [
            ("x-beta", "true"),
            ("x-env", "prod"),
            ("x-internal", "secret"),
        ];
        let reply = get_with(proto, proxy.addr(), "/api/users?id=7", &headers).await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
        expected[1] += 1;
        assert_eq!(
            upstreams.counts(),
            expected,
            "{proto:?}: beta got it, app did not"
        );
        let seen = reply.seen()?;
        assert_eq!(seen.path, "/api/users?id=7", "{proto:?}");
        assert_eq!(seen.header_values("x-env"), ["beta"], "{proto:?}: set");
        assert_eq!(
            seen.header("x-routed-by"),
            Some("header-router"),
            "{proto:?}: added"
        );
        assert!(!seen.has_header("x-internal"), "{proto:?}: removed");
        assert_eq!(reply.header("x-upstream-choice"), Some("beta"), "{proto:?}");

        // Without the header: the route's upstream, untouched.
        let reply = get_with(
            proto,
            proxy.addr(),
            "/api/users",
            &[("x-internal", "secret")],
        )
        .await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
        expected[0] += 1;
        assert_eq!(upstreams.counts(), expected, "{proto:?}: app got it");
        assert_eq!(
            reply.seen()?.header("x-internal"),
            Some("secret"),
            "{proto:?}"
        );
        assert_eq!(reply.header("x-upstream-choice"), None, "{proto:?}");
    }

    let scrape = weft_tests::scrape(proxy.admin()).await?;
    let runs = Proto::ALL.len() as f64;
    assert_eq!(
        scrape.require(DECISIONS, &[("rule", "beta-users"), ("upstream", "beta")])?,
        runs
    );
    assert_eq!(
        scrape.require(DECISIONS, &[("rule", "none"), ("upstream", "app")])?,
        runs
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_split_reaches_both_upstreams_and_is_counted() -> anyhow::Result<()> {
    const REQUESTS: usize = 300;
    let upstreams = Upstreams::start().await?;
    let config = json!({ "rules": [{
        "name": "canary",
        "split": [{ "upstream": "app", "weight": 90 }, { "upstream": "canary", "weight": 10 }]
    }] });
    let proxy = start_proxy(&upstreams.yaml(&config)).await?;
    for _ in 0..REQUESTS {
        let reply = get(proxy.addr(), "/", &[]).await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let [app, beta, canary] = upstreams.counts();
    assert_eq!(app + canary, REQUESTS);
    assert_eq!(beta, 0);
    // Expected 30 on the canary; none (0.9^300 ≈ 2e-14) or more than 90 would be a bug.
    assert!(
        (1..=90).contains(&canary),
        "{canary} of {REQUESTS} on the canary"
    );

    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(
        scrape.require(DECISIONS, &[("rule", "canary"), ("upstream", "canary")])?,
        canary as f64
    );
    assert_eq!(
        scrape.require(DECISIONS, &[("rule", "canary"), ("upstream", "app")])?,
        app as f64
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_split_keeps_each_user_on_one_upstream() -> anyhow::Result<()> {
    let upstreams = Upstreams::start().await?;
    let config = json!({ "rules": [{
        "split": [{ "upstream": "app", "weight": 50 }, { "upstream": "canary", "weight": 50 }],
        "sticky": { "header": "x-user" }
    }] });
    let proxy = start_proxy(&upstreams.yaml(&config)).await?;
    let mut placed: HashMap<String, usize> = HashMap::new();
    for round in 0..5 {
        for user in 0..30 {
            let user = format!("user-{user}");
            let before = upstreams.counts();
            let proto = if round % 2 == 0 {
                Proto::Http1
            } else {
                Proto::H2c
            };
            let reply = get_with(proto, proxy.addr(), "/", &[("x-user", &user)]).await?;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            let after = upstreams.counts();
            let served_by = (0..3)
                .find(|&i| after[i] == before[i] + 1)
                .expect("one upstream served the request");
            let first = *placed.entry(user.clone()).or_insert(served_by);
            assert_eq!(first, served_by, "{user} moved in round {round}");
        }
    }
    let on_app = placed.values().filter(|&&i| i == 0).count();
    let on_canary = placed.values().filter(|&&i| i == 2).count();
    assert_eq!(on_app + on_canary, 30);
    // 30 users at 50/50: all on one side has probability 2^-29.
    assert!(
        on_app > 0 && on_canary > 0,
        "{on_app} on app, {on_canary} on canary"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_upstream_is_a_503_naming_it() -> anyhow::Result<()> {
    let upstreams = Upstreams::start().await?;
    let config = json!({ "rules": [{
        "name": "typo",
        "match": { "headers": [{ "name": "x-beta", "present": true }] },
        "upstream": "app-bta",
        "response_headers": { "add": { "x-upstream-choice": "beta" } }
    }] });
    let proxy = start_proxy(&upstreams.yaml(&config)).await?;
    let reply = get(proxy.addr(), "/", &[("x-beta", "1")]).await?;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(
        reply.text().contains("\"app-bta\""),
        "the 503 names the upstream: {:?}",
        reply.text()
    );
    assert_eq!(
        reply.header("x-upstream-choice"),
        Some("beta"),
        "added response headers reach the proxy's own reply too"
    );
    assert_eq!(upstreams.counts(), [0, 0, 0], "nothing was sent");
    let reply = get(proxy.addr(), "/", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_stops_the_proxy_naming_the_field() {
    let upstream = Upstream::start().await.expect("upstream");
    let config = json!({ "rules": [
        { "name": "ok", "match": { "path": { "prefix": "/a" } }, "upstream": "app" },
        { "name": "bad", "match": { "headers": [{ "name": "x-v", "regex": "v(1" }] }, "upstream": "app" }
    ] });
    let yaml = one_route(
        upstream.addr(),
        &[filter(
            "router",
            guests::HEADER_ROUTER,
            &format!("config: {config}"),
        )],
    );
    let message = proxy_start_error(&yaml).await;
    assert!(message.contains("router"), "names the filter: {message}");
    assert!(
        message.contains("config field `rules[1].match.headers[0].regex`: invalid regex"),
        "names the field: {message}"
    );
}

/// The heaviest pattern `filters/header-router/README.md` documents: Unicode `\w` in a counted
/// repetition after `.*` keeps the lazy DFA from caching its states, so every byte costs an NFA
/// step.
const HEAVIEST_PATTERN: &str = r".*(\w\s?){20}.*";

/// A client cannot turn its own requests into filter timeouts with a huge header: a value
/// longer than `max_regex_bytes` (4 KiB by default) is not scanned and does not match, and
/// a condition scans at most that much over all the values of a repeated header. With the
/// proxy's default 50 ms budget, a 100 KB value against the heaviest documented pattern took
/// far longer than the budget before the bound: every such request failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_against_a_heavy_regex_is_a_clean_non_match() -> anyhow::Result<()> {
    let upstreams = Upstreams::start().await?;
    let config = json!({ "rules": [{
        "name": "heavy",
        "match": { "headers": [{ "name": "x-agent", "regex": HEAVIEST_PATTERN }] },
        "upstream": "beta",
    }] });
    let mut yaml = upstreams.yaml(&config);
    // Room for 100 KB headers (the default limit is 64 KiB).
    yaml.push_str("limits:\n  max_request_header_bytes: 1MiB\n");
    let proxy = start_proxy(&yaml).await?;
    let word = |len: usize| "a".repeat(len);
    let timeouts = || async {
        let scrape = weft_tests::scrape(proxy.admin()).await?;
        anyhow::Ok(
            scrape
                .value(
                    "weft_filter_errors_total",
                    &[("filter", "router"), ("kind", "timeout")],
                )
                .unwrap_or(0.0),
        )
    };

    // 100 KB: over the bound, not scanned: the route's upstream, at once. (Over HTTP/1.1, as
    // all of this test: the test upstream's HTTP/2 server takes at most 16 KiB of headers.)
    let huge = word(100_000);
    let reply = get(proxy.addr(), "/", &[("x-agent", &huge)]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(timeouts().await?, 0.0);
    assert_eq!(
        upstreams.counts(),
        [1, 0, 0],
        "the huge value did not match"
    );

    // Exactly at the bound, the pattern scans it all (~20 ms in wasm on a loaded 2-core
    // machine) and matches, inside the budget.
    let at_bound = word(4 << 10);
    let reply = get(proxy.addr(), "/", &[("x-agent", &at_bound)]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        upstreams.counts(),
        [1, 1, 0],
        "4 KiB is scanned and matches"
    );

    // A short value, then twenty of 4 KiB (80 KB in all): the short one is scanned (it does
    // not match); each long one would take the condition past its bound, so none is scanned:
    // no match, and at once.
    let mut headers = vec![("x-agent", "a b")];
    headers.extend(std::iter::repeat_n(("x-agent", at_bound.as_str()), 20));
    let reply = get(proxy.addr(), "/", &headers).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstreams.counts(), [2, 1, 0]);

    assert_eq!(timeouts().await?, 0.0, "no filter timeout");
    let scrape = weft_tests::scrape(proxy.admin()).await?;
    assert_eq!(
        scrape.require(DECISIONS, &[("rule", "heavy"), ("upstream", "beta")])?,
        1.0
    );
    Ok(())
}
