//! The config file's tests: one per rule and message, with the YAML that breaks it. Long
//! because the rules are many; each test is independent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::*;

/// A directory holding `weft.yaml` and the module files the configs below refer to.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("filters")).expect("mkdir");
        for module in ["filters/auth.wasm", "filters/ratelimit.wasm"] {
            std::fs::write(dir.path().join(module), b"\0asm").expect("write module");
        }
        Self { dir }
    }

    fn load(&self, yaml: &str) -> Result<Config, ConfigError> {
        let path = self.path();
        std::fs::write(&path, yaml).expect("write config");
        Config::load(&path)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("weft.yaml")
    }
}

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Fixture::new().load(yaml)
}

/// Loads `yaml`, which must fail on the line marked `# <-`, at `field`, with a message
/// containing `fragment`.
#[track_caller]
fn rejected(yaml: &str, field: &str, fragment: &str) -> ConfigError {
    let line = yaml
        .lines()
        .position(|l| l.contains("# <-"))
        .expect("a line marked `# <-`")
        + 1;
    let err = load(yaml).expect_err("config should be rejected");
    let shown = err.to_string();
    assert_eq!(err.field, field, "field of: {shown}");
    assert_eq!(err.line, Some(line), "line of: {shown}");
    assert!(err.column.is_some(), "column of: {shown}");
    assert!(err.file.ends_with("weft.yaml"), "file of: {shown}");
    assert!(
        err.message.contains(fragment),
        "expected {fragment:?} in: {shown}"
    );
    let prefix = match field {
        "" => format!("weft.yaml:{line}:"),
        field => format!(
            "weft.yaml:{line}:{}: {field}: ",
            err.column.unwrap_or_default()
        ),
    };
    assert!(shown.contains(&prefix), "expected {prefix:?} in: {shown}");
    err
}

const MINIMAL: &str = "\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    filters:
      - name: auth
        module: filters/auth.wasm
    routes:
      - name: default
        upstream: app
upstreams:
  - name: app
    endpoints: [\"127.0.0.1:3000\"]
";

#[test]
fn defaults_fill_in_what_is_left_out() {
    let fixture = Fixture::new();
    let config = fixture.load(MINIMAL).expect("valid");
    assert!(config.admin.is_none());
    assert!(config.cache_dir.is_none());
    assert_eq!(config.source, fixture.path());
    assert_eq!(
        config.limits,
        Limits {
            max_request_header_bytes: 64 * 1024,
            max_request_body_bytes: 16 * 1024 * 1024,
            max_buffered_body_bytes: 1024 * 1024,
            max_connections: 10_000,
            request_head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            http2_max_concurrent_streams: 128,
            http2_keepalive_interval: Some(Duration::from_secs(60)),
            http2_keepalive_timeout: Duration::from_secs(20),
            http2_max_premature_resets: 100,
            max_concurrent_calls_per_filter: 1024,
            max_active_delays_per_filter: 1024,
            max_outbound_calls_per_filter: 1024,
        }
    );

    let listener = &config.listeners[0];
    assert_eq!(listener.direction, Direction::Inbound);
    assert_eq!(
        listener.paths,
        PathNormalization {
            enabled: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    );
    let filter = &listener.filters[0];
    assert_eq!(filter.module, fixture.dir.path().join("filters/auth.wasm"));
    assert_eq!(filter.config, serde_json::Value::Null);
    assert_eq!(filter.failure_policy, FailurePolicy::FailClosed);
    assert_eq!(filter.time_budget, Duration::from_millis(50));
    assert_eq!(filter.isolation, Isolation::Pooled);
    assert_eq!(filter.max_memory_bytes, 32 * 1024 * 1024);

    let route = &listener.routes[0];
    assert_eq!(
        route.matcher,
        RouteMatch {
            path: PathMatch::Prefix("/".into()),
            headers: vec![]
        }
    );
    assert_eq!(route.timeout, None);
    assert!(route.filters.is_empty());

    let upstream = config.upstream("app").expect("upstream app");
    assert_eq!(upstream.protocol, UpstreamProtocol::Auto);
    assert_eq!(upstream.connect_timeout, Duration::from_secs(1));
    assert_eq!(upstream.timeout, Duration::from_secs(30));
    assert!(config.upstream("billing").is_none());
}

/// The example in the module documentation, so that it cannot go stale.
fn doc_example() -> String {
    let source = include_str!("../config.rs");
    let mut lines = source.lines().map(|l| l.strip_prefix("//!").unwrap_or(l));
    lines
        .by_ref()
        .find(|l| l.trim() == "```yaml")
        .expect("a yaml block in the module docs");
    lines
        .take_while(|l| l.trim() != "```")
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect()
}

#[test]
fn doc_example_is_valid() {
    let fixture = Fixture::new();
    let config = fixture
        .load(&doc_example())
        .expect("the documented example is valid");
    let dir = fixture.dir.path();

    assert_eq!(
        config.admin.as_ref().expect("admin").address,
        "127.0.0.1:9901".parse().expect("addr")
    );
    assert_eq!(config.cache_dir, Some(dir.join("cache")));
    assert_eq!(config.limits, Limits::default());

    let listener = &config.listeners[0];
    assert_eq!(listener.name, "ingress");
    assert_eq!(listener.address, "0.0.0.0:8080".parse().expect("addr"));
    assert_eq!(listener.direction, Direction::Inbound);

    let auth = &listener.filters[0];
    assert_eq!(auth.name, "auth");
    assert_eq!(auth.module, dir.join("filters/auth.wasm"));
    assert_eq!(
        auth.config,
        json!({ "issuer": "https://id.example.com", "audiences": ["app"] })
    );
    assert_eq!(auth.time_budget, Duration::from_millis(20));
    assert_eq!(auth.max_memory_bytes, 16 << 20);
    assert_eq!(listener.filters[1].name, "ratelimit");

    let billing = &listener.routes[0];
    assert_eq!(billing.name, "billing-api");
    assert_eq!(billing.matcher.path, PathMatch::Prefix("/billing".into()));
    assert_eq!(
        billing.matcher.headers,
        vec![
            HeaderMatch {
                name: http::HeaderName::from_static("x-env"),
                rule: HeaderRule::Exact("canary".into())
            },
            HeaderMatch {
                name: http::HeaderName::from_static("x-tenant"),
                rule: HeaderRule::Prefix("acme-".into())
            },
            HeaderMatch {
                name: http::header::AUTHORIZATION,
                rule: HeaderRule::Present
            },
        ]
    );
    assert_eq!(
        billing.target,
        RouteTarget::Upstream(UpstreamRef::parse("billing"))
    );
    assert_eq!(billing.timeout, Some(Duration::from_secs(5)));
    assert_eq!(billing.filters["ratelimit"], FilterOverride::Disabled);
    assert_eq!(
        billing.filters["auth"],
        FilterOverride::Config(
            json!({ "issuer": "https://id.example.com", "audiences": ["billing"] })
        )
    );
    assert_eq!(listener.routes[1].matcher, RouteMatch::default());

    let upstream = config.upstream("billing").expect("billing");
    assert_eq!(
        upstream.endpoints,
        [
            EndpointConfig::new("billing-0.internal:8443"),
            EndpointConfig::new("[fd00::12]:8443")
        ]
    );
    assert_eq!(upstream.protocol, UpstreamProtocol::Http2);
    assert_eq!(upstream.connect_timeout, Duration::from_millis(500));
    assert_eq!(upstream.timeout, Duration::from_secs(10));

    let cp = config.control_plane.as_ref().expect("control_plane");
    assert_eq!(cp.address, "https://127.0.0.1:18000");
    assert_eq!(
        (cp.name.as_str(), cp.namespace.as_str()),
        ("app-7f9c", "shop")
    );
    assert_eq!(cp.labels.get("app").map(String::as_str), Some("shop"));
    assert!(cp.state_dir.ends_with("state"), "{:?}", cp.state_dir);
    let tls = cp.tls.as_ref().expect("tls");
    let (cert, _) = tls.client_cert.as_ref().expect("client certificate");
    assert!(cert.ends_with("certs/proxy.pem"), "{cert:?}");

    let identity = config.identity.as_ref().expect("identity");
    assert_eq!(
        (
            identity.namespace.as_str(),
            identity.service_account.as_str()
        ),
        ("shop", "orders")
    );
    assert!(identity.token_file.ends_with("weft/token"));
    let listener = &config.listeners[0];
    assert_eq!(listener.tls, InboundTls::Strict);
    assert_eq!(
        listener.peer_identity_header.as_ref().map(|h| h.as_str()),
        Some("x-weft-peer-identity")
    );
    let reviews = config.upstream("reviews").expect("reviews");
    match &reviews.tls {
        UpstreamTls::Mesh { identity: Some(id) } => {
            assert_eq!(id.as_str(), "spiffe://cluster.local/ns/shop/sa/reviews");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        config.upstream("app").expect("app").tls,
        UpstreamTls::Disabled
    );
}

#[test]
fn mesh_tls_errors_name_the_field() {
    let cp = "control_plane: { address: http://cp:1, name: p, namespace: shop }\n";
    let listener = |tls: &str| {
        format!(
            "listeners: [{{ name: l, address: 127.0.0.1:0, {tls} routes: [{{ name: r, upstream: u }}] }}]\n"
        )
    };
    let upstream =
        |tls: &str| format!("upstreams: [{{ name: u, endpoints: [\"127.0.0.1:1\"] {tls} }}]\n");
    let cases = [
        (
            format!("{}{}", listener("tls: { mode: strict },"), upstream("")),
            "listeners[0].tls.mode: mTLS needs this proxy's workload identity",
        ),
        (
            format!("{}{}", listener(""), upstream(", tls: { mode: mesh }")),
            "upstreams[0].tls.mode: mesh mTLS needs this proxy's workload identity",
        ),
        (
            format!(
                "{}{}identity: {{ token_file: t }}\n",
                listener(""),
                upstream("")
            ),
            "identity: needs `control_plane`",
        ),
        (
            format!(
                "{}{}{cp}identity: {{ token_file: t }}\n",
                listener(""),
                upstream(", tls: { mode: mesh, identity: \"spiffe://td/ns/shop\" }")
            ),
            "upstreams[0].tls.identity: \"spiffe://td/ns/shop\" is not a workload SPIFFE ID",
        ),
        (
            format!(
                "{}{}{cp}identity: {{ token_file: t, service_account: Orders }}\n",
                listener(""),
                upstream("")
            ),
            "identity.service_account: service account \"Orders\" contains 'O'",
        ),
        (
            format!("{}{}", listener("tls: { mode: sometimes },"), upstream("")),
            "unknown variant `sometimes`",
        ),
        (
            format!(
                "{}{}",
                listener("peer_identity_header: connection,"),
                upstream("")
            ),
            "listeners[0].peer_identity_header: \"connection\" is a header the proxy manages",
        ),
        (
            format!(
                "{}{}control_plane: {{ address: https://cp:1, name: p, tls: {{ ca: a }} }}\n",
                listener(""),
                upstream("")
            ),
            "control_plane.tls: needs `cert` and `key`",
        ),
    ];
    for (yaml, want) in cases {
        let err = load(&yaml).expect_err(&yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
    // With an identity, the control plane channel may use the workload certificate.
    let ok = format!(
        "{}{}control_plane: {{ address: https://cp:1, name: p, tls: {{ ca: a }} }}\nidentity: {{ token_file: t }}\n",
        listener("tls: { mode: permissive },"),
        upstream(", tls: { mode: mesh }")
    );
    let config = load(&ok).expect("valid");
    assert_eq!(
        config
            .control_plane
            .expect("cp")
            .tls
            .expect("tls")
            .client_cert,
        None
    );
    assert_eq!(config.listeners[0].tls, InboundTls::Permissive);
    assert_eq!(
        config.upstreams[0].tls,
        UpstreamTls::Mesh { identity: None }
    );
}

#[test]
fn control_plane_errors_name_the_field() {
    let base = "listeners: [{ name: l, address: 127.0.0.1:0, routes: [{ name: r, upstream: u }] }]\nupstreams: [{ name: u, endpoints: [\"127.0.0.1:1\"] }]\n";
    let cases = [
        (
            "control_plane: { address: grpc://cp:1, name: p }",
            "control_plane.address: invalid address",
        ),
        (
            "control_plane: { address: https://cp:1, name: p }",
            "https:// needs `tls",
        ),
        (
            "control_plane: { address: http://cp:1, name: p, tls: { ca: a, cert: b, key: c } }",
            "`tls` is set but the address is http://",
        ),
        (
            "control_plane: { address: http://cp:1, name: \"bad name\" }",
            "control_plane.name: invalid name",
        ),
        (
            "control_plane: { address: http://cp:1, name: p, colour: blue }",
            "unknown field `colour`",
        ),
    ];
    for (section, want) in cases {
        let err = load(&format!("{base}{section}\n"))
            .expect_err(section)
            .to_string();
        assert!(err.contains(want), "{section}: {err}");
        assert!(
            err.contains("weft.yaml:3:"),
            "{section}: the error names the line: {err}"
        );
    }
}

#[test]
fn doc_example_error_is_accurate() {
    let yaml = doc_example().replace("upstream: billing ", "upstream: bilings ");
    let err = load(&yaml).expect_err("invalid");
    let documented = "weft.yaml:75:19: listeners[0].routes[0].upstream: unknown upstream \"bilings\" (known: app, billing, reviews)";
    assert!(include_str!("../config.rs").contains(documented));
    assert!(err.to_string().ends_with(documented), "{err}");
}

#[test]
fn every_option_has_its_spelling() {
    let config = load(
        "\
limits:
  max_request_header_bytes: 32768
  max_request_body_bytes: 1GiB
  max_buffered_body_bytes: 512 KiB
  max_connections: 5
  request_head_timeout: 2s
  idle_timeout: 1m30s
  http2_max_concurrent_streams: 10
  http2_keepalive_interval: off
  http2_keepalive_timeout: 500ms
  http2_max_premature_resets: 7
  max_concurrent_calls_per_filter: 3
  max_active_delays_per_filter: 0
  max_outbound_calls_per_filter: 9
listeners:
  - name: egress
    address: '[::1]:0'
    direction: outbound
    paths: { normalize: false, merge_slashes: false, escaped_slashes: keep }
    filters:
      - name: ratelimit
        module: filters/ratelimit.wasm
        failure_policy: fail_open
        isolation: per_request
        max_memory: 1048576
        config: 3
    routes:
      - name: health
        match: { path: { exact: /healthz } }
        upstream: app
upstreams:
  - name: app
    endpoints: [localhost:1]
    protocol: http1
",
    )
    .expect("valid");
    assert_eq!(
        config.limits,
        Limits {
            max_request_header_bytes: 32768,
            max_request_body_bytes: 1 << 30,
            max_buffered_body_bytes: 512 << 10,
            max_connections: 5,
            request_head_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(90),
            http2_max_concurrent_streams: 10,
            http2_keepalive_interval: None,
            http2_keepalive_timeout: Duration::from_millis(500),
            http2_max_premature_resets: 7,
            max_concurrent_calls_per_filter: 3,
            max_active_delays_per_filter: 0,
            max_outbound_calls_per_filter: 9,
        }
    );
    let listener = &config.listeners[0];
    assert_eq!(listener.direction, Direction::Outbound);
    assert_eq!(
        listener.paths,
        PathNormalization {
            enabled: false,
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::Keep,
        }
    );
    let filter = &listener.filters[0];
    assert_eq!(filter.failure_policy, FailurePolicy::FailOpen);
    assert_eq!(filter.isolation, Isolation::PerRequest);
    assert_eq!(filter.max_memory_bytes, 1 << 20);
    assert_eq!(filter.config, json!(3));
    assert_eq!(
        listener.routes[0].matcher.path,
        PathMatch::Exact("/healthz".into())
    );
    assert_eq!(config.upstreams[0].protocol, UpstreamProtocol::Http1);
}

#[test]
fn inline_config_has_no_file() {
    let yaml = MINIMAL.replace(
        "    filters:\n      - name: auth\n        module: filters/auth.wasm\n",
        "",
    );
    let config = Config::from_yaml(&yaml, Path::new("<inline>")).expect("valid");
    assert_eq!(config.source, Path::new("<inline>"));

    let err = Config::from_yaml("listeners: []\n", Path::new("<inline>")).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "<inline>:1:12: listeners: at least one listener is required, like `listeners: [{ name: ingress, address: 0.0.0.0:8080, routes: [...] }]`"
    );
}

#[test]
fn port_zero_listeners_may_share_an_address() {
    let yaml = MINIMAL.replace("127.0.0.1:8080", "127.0.0.1:0").replace(
        "upstreams:",
        "  - name: second\n    address: 127.0.0.1:0\n    routes: [{ name: default, upstream: app }]\nupstreams:",
    );
    assert_eq!(load(&yaml).expect("valid").listeners.len(), 2);
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weft.yaml");
    let err = Config::load(&path).expect_err("no such file");
    assert_eq!(err.line, None);
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            path.display()
        )),
        "{err}"
    );
}

// Rejected files. Each marks the line the error must point at with `# <-`.

#[test]
fn rejects_syntax_errors() {
    rejected(
        "\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
  name: b: c  # <-
",
        "",
        "did not find expected '-' indicator, while parsing a block collection at line 2 column 3",
    );
}

#[test]
fn rejects_a_document_that_is_not_a_mapping() {
    rejected(
        "- listeners  # <-\n",
        "",
        "invalid type: sequence, expected a mapping with the keys `listeners` and `upstreams`",
    );
}

#[test]
fn rejects_no_listeners() {
    rejected(
        "listeners: []  # <-\nupstreams: []\n",
        "listeners",
        "at least one listener is required",
    );
    // Without the key, the error points at the start of the document.
    let err = load("upstreams: []\n").expect_err("invalid");
    assert_eq!((err.field.as_str(), err.line), ("listeners", Some(1)));
}

#[test]
fn rejects_unknown_fields_at_every_level() {
    let cases = [
        (
            "adress: x  # <-\n",
            "",
            "unknown field `adress`, expected one of `admin`, `cache_dir`, `limits`, `listeners`, `upstreams`",
        ),
        (
            "admin: { address: 127.0.0.1:1, port: 2 }  # <-\n",
            "admin",
            "unknown field `port`, expected `address`",
        ),
        (
            "limits:\n  max_header_bytes: 1  # <-\n",
            "limits",
            "unknown field `max_header_bytes`",
        ),
        (
            "listeners:\n  - name: a\n    adress: x  # <-\n",
            "listeners[0]",
            "unknown field `adress`, expected one of `name`, `address`,",
        ),
        (
            "listeners:\n  - name: a\n    filters:\n      - name: f\n        budget: 1ms  # <-\n",
            "listeners[0].filters[0]",
            "unknown field `budget`",
        ),
        (
            "listeners:\n  - name: a\n    routes:\n      - name: r\n        matches: {}  # <-\n",
            "listeners[0].routes[0]",
            "unknown field `matches`, expected one of `name`, `match`,",
        ),
        (
            "listeners:\n  - name: a\n    routes:\n      - match:\n          path: { regex: x }  # <-\n",
            "listeners[0].routes[0].match.path",
            "unknown field `regex`, expected `exact` or `prefix`",
        ),
        (
            "listeners:\n  - name: a\n    routes:\n      - match:\n          headers:\n            - { name: a, suffix: x }  # <-\n",
            "listeners[0].routes[0].match.headers[0]",
            "unknown field `suffix`",
        ),
        (
            "listeners:\n  - name: a\n    routes:\n      - filters:\n          auth: { enabled: false }  # <-\n",
            "listeners[0].routes[0].filters.auth",
            "unknown field `enabled`, expected `disabled` or `config`",
        ),
        (
            "upstreams:\n  - name: app\n    endpoint: x  # <-\n",
            "upstreams[0]",
            "unknown field `endpoint`, expected one of",
        ),
    ];
    for (yaml, field, message) in cases {
        rejected(yaml, field, message);
    }
}

#[test]
fn rejects_wrong_types() {
    let err = rejected(
        "\
listeners:
  - name: ingress
    routes:
      - name: default
        filters:
          auth:
            disabled: \"yes\"  # <-
",
        "listeners[0].routes[0].filters.auth.disabled",
        "invalid type: string \"yes\", expected a boolean",
    );
    assert_eq!(err.column, Some(23));
    rejected(
        "listeners:\n  - routes: 5  # <-\n",
        "listeners[0].routes",
        "invalid type: integer `5`, expected a sequence",
    );
    rejected(
        "admin: 127.0.0.1:9901  # <-\n",
        "admin",
        "expected a mapping with the key `address`",
    );
    rejected(
        "limits:\n  max_request_body_bytes: [1]  # <-\n",
        "limits.max_request_body_bytes",
        "expected a size, like 16MiB, or a number of bytes",
    );
}

#[test]
fn rejects_unknown_enum_values() {
    rejected(
        "listeners:\n  - name: a\n    direction: in  # <-\n",
        "listeners[0].direction",
        "unknown variant `in`, expected `inbound` or `outbound`",
    );
    rejected(
        "upstreams:\n  - name: a\n    protocol: h2c  # <-\n",
        "upstreams[0].protocol",
        "unknown variant `h2c`, expected one of `auto`, `http1`, `http2`",
    );
}

#[test]
fn rejects_missing_required_fields() {
    rejected(
        "listeners:\n  - address: 127.0.0.1:1  # <-\n",
        "listeners[0]",
        "missing field `name`",
    );
}

#[test]
fn rejects_duplicate_keys_at_the_second_one() {
    rejected(
        "listeners:\n  - name: a\n    address: 127.0.0.1:1\n    name: b  # <-\n",
        "listeners[0]",
        "duplicate field `name`",
    );
}

#[test]
fn rejects_invalid_listener_address() {
    rejected(
        &MINIMAL.replace("address: 127.0.0.1:8080", "address: localhost:8080  # <-"),
        "listeners[0].address",
        "invalid address \"localhost:8080\": expected IP:port, like 0.0.0.0:8080 or [::1]:8080 (host names are not allowed here)",
    );
}

#[test]
fn rejects_invalid_admin_address() {
    rejected(
        &format!("admin:\n  address: 9901  # <-\n{MINIMAL}"),
        "admin.address",
        "invalid address \"9901\"",
    );
}

#[test]
fn rejects_admin_address_used_by_a_listener() {
    rejected(
        &format!("admin:\n  address: 127.0.0.1:8080  # <-\n{MINIMAL}"),
        "admin.address",
        "address 127.0.0.1:8080 is already used by listener \"ingress\"",
    );
}

#[test]
fn rejects_empty_cache_dir() {
    rejected(
        &format!("cache_dir: ''  # <-\n{MINIMAL}"),
        "cache_dir",
        "must not be empty",
    );
}

#[test]
fn rejects_invalid_limits() {
    rejected(
        &format!("limits:\n  max_request_body_bytes: lots  # <-\n{MINIMAL}"),
        "limits.max_request_body_bytes",
        "invalid size \"lots\": expected a number of bytes, or a number followed by B, KiB, MiB or GiB, like 16MiB",
    );
    rejected(
        &format!("limits:\n  max_buffered_body_bytes: 0  # <-\n{MINIMAL}"),
        "limits.max_buffered_body_bytes",
        "invalid size \"0\": must be at least 1B",
    );
}

#[test]
fn rejects_duplicate_listener_names() {
    let yaml = MINIMAL.replace(
        "upstreams:",
        "  - name: ingress  # <-\n    address: 127.0.0.1:8081\n    routes: [{ name: default, upstream: app }]\nupstreams:",
    );
    rejected(
        &yaml,
        "listeners[1].name",
        "duplicate listener name \"ingress\": listeners[0] has it too",
    );
}

#[test]
fn rejects_duplicate_listener_addresses() {
    let yaml = MINIMAL.replace(
        "upstreams:",
        "  - name: second\n    address: 127.0.0.1:8080  # <-\n    routes: [{ name: default, upstream: app }]\nupstreams:",
    );
    rejected(
        &yaml,
        "listeners[1].address",
        "address 127.0.0.1:8080 is already used by listener \"ingress\" (listeners[0])",
    );
}

#[test]
fn rejects_invalid_names() {
    rejected(
        &MINIMAL.replace("- name: auth", "- name: my filter  # <-"),
        "listeners[0].filters[0].name",
        "invalid name \"my filter\": ' ' is not allowed; use only letters, digits, '_', '.' and '-'",
    );
    rejected(
        &MINIMAL.replace("- name: ingress", "- name: ''  # <-"),
        "listeners[0].name",
        "must not be empty",
    );
}

#[test]
fn rejects_duplicate_filter_names() {
    let yaml = MINIMAL.replace(
        "    routes:",
        "      - name: auth  # <-\n        module: filters/ratelimit.wasm\n    routes:",
    );
    rejected(
        &yaml,
        "listeners[0].filters[1].name",
        "duplicate filter name \"auth\": filters[0] of this listener has it too",
    );
}

#[test]
fn rejects_missing_module() {
    let fixture = Fixture::new();
    let yaml = MINIMAL.replace(
        "module: filters/auth.wasm",
        "module: filters/missing.wasm  # <-",
    );
    let err = fixture.load(&yaml).expect_err("invalid");
    let expected = fixture.dir.path().join("filters/missing.wasm");
    assert_eq!(
        err.message,
        format!(
            "filter \"auth\": module file not found: {}",
            expected.display()
        )
    );
    assert_eq!(
        (err.field.as_str(), err.line),
        ("listeners[0].filters[0].module", Some(6))
    );
    rejected(
        &yaml,
        "listeners[0].filters[0].module",
        "module file not found: ",
    );
    rejected(
        &MINIMAL.replace("module: filters/auth.wasm", "module: filters  # <-"),
        "listeners[0].filters[0].module",
        "module is not a file: ",
    );
}

#[test]
fn rejects_invalid_time_budget() {
    let with = |value: &str| {
        MINIMAL.replace(
            "module: filters/auth.wasm",
            &format!("module: filters/auth.wasm\n        time_budget: {value}  # <-"),
        )
    };
    let err = rejected(
        &with("fast"),
        "listeners[0].filters[0].time_budget",
        "invalid duration \"fast\": expected a number followed by a unit, like 50ms",
    );
    assert_eq!(err.column, Some(22));
    rejected(
        &with("50"),
        "listeners[0].filters[0].time_budget",
        "expected a number followed by a unit",
    );
    rejected(
        &with("0ms"),
        "listeners[0].filters[0].time_budget",
        "invalid duration \"0ms\": must be more than 0",
    );
    rejected(
        &with("11s"),
        "listeners[0].filters[0].time_budget",
        "invalid duration \"11s\": must be at most 10s",
    );
    assert!(load(&with("10s").replace("  # <-", "")).is_ok());
}

/// The duration syntax is the filters' (`weft_text::parse_duration`): fractions and compound
/// durations work, and a sum that overflows is an error, not a panic (humantime panics on it).
#[test]
fn durations_read_as_filters_read_them() {
    let with = |value: &str| {
        MINIMAL.replace(
            "module: filters/auth.wasm",
            &format!("module: filters/auth.wasm\n        time_budget: \"{value}\"  # <-"),
        )
    };
    for (text, expected) in [
        ("1.5s", Duration::from_millis(1500)),
        ("250ms", Duration::from_millis(250)),
        ("1s 500ms", Duration::from_millis(1500)),
    ] {
        let config = load(&with(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            config.listeners[0].filters[0].time_budget, expected,
            "{text}"
        );
    }
    rejected(
        &with("18446744073709551615s 1000000000ns"),
        "listeners[0].filters[0].time_budget",
        "invalid duration",
    );
}

#[test]
fn rejects_invalid_max_memory() {
    let with = |value: &str| {
        MINIMAL.replace(
            "module: filters/auth.wasm",
            &format!("module: filters/auth.wasm\n        max_memory: {value}  # <-"),
        )
    };
    rejected(
        &with("64MB"),
        "listeners[0].filters[0].max_memory",
        "invalid size \"64MB\": unknown unit \"MB\"; use B, KiB, MiB or GiB (powers of 1024)",
    );
    rejected(
        &with("512KiB"),
        "listeners[0].filters[0].max_memory",
        "invalid size \"512KiB\": must be between 1MiB and 4GiB",
    );
    rejected(
        &with("5GiB"),
        "listeners[0].filters[0].max_memory",
        "must be between 1MiB and 4GiB",
    );
    rejected(
        &with("1.5GiB"),
        "listeners[0].filters[0].max_memory",
        "use a whole number",
    );
    rejected(
        &with("-1"),
        "listeners[0].filters[0].max_memory",
        "invalid size \"-1\"",
    );
    let config = load(&with("4GiB").replace("  # <-", "")).expect("valid");
    assert_eq!(
        config.listeners[0].filters[0].max_memory_bytes as u64,
        4 << 30
    );
}

#[test]
fn rejects_listener_without_routes() {
    let yaml = MINIMAL.replace(
        "    routes:\n      - name: default\n        upstream: app\n",
        "    routes: []  # <-\n",
    );
    rejected(
        &yaml,
        "listeners[0].routes",
        "at least one route is required",
    );
    // Without the key, the error points at the listener.
    let yaml = MINIMAL.replace(
        "    routes:\n      - name: default\n        upstream: app\n",
        "",
    );
    let err = load(&yaml).expect_err("invalid");
    assert_eq!(
        (err.field.as_str(), err.line, err.column),
        ("listeners[0].routes", Some(2), Some(5))
    );
}

#[test]
fn rejects_duplicate_route_names() {
    let yaml = MINIMAL.replace(
        "upstreams:",
        "      - name: default  # <-\n        upstream: app\nupstreams:",
    );
    rejected(
        &yaml,
        "listeners[0].routes[1].name",
        "duplicate route name \"default\": routes[0] of this listener has it too",
    );
}

#[test]
fn rejects_unknown_upstream() {
    let yaml = MINIMAL
        .replace(
            "upstream: app",
            "upstream: app\n      - name: api\n        upstream: bakend  # <-",
        )
        .replace(
            "upstreams:",
            "upstreams:\n  - name: billing\n    endpoints: [\"127.0.0.1:3001\"]",
        );
    let err = rejected(
        &yaml,
        "listeners[0].routes[1].upstream",
        "unknown upstream \"bakend\" (known: billing, app)",
    );
    assert_eq!(err.column, Some(19));
    rejected(
        "listeners:\n  - name: a\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        upstream: app  # <-\n",
        "listeners[0].routes[0].upstream",
        "unknown upstream \"app\": no upstreams are defined; add one under `upstreams`",
    );
}

#[test]
fn rejects_overrides_of_unknown_filters() {
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        filters:\n          authz: { disabled: true }  # <-",
    );
    rejected(
        &yaml,
        "listeners[0].routes[0].filters.authz",
        "unknown filter \"authz\": overrides must name a filter of this listener (filters: auth)",
    );
}

#[test]
fn rejects_overrides_of_unknown_filters_at_the_key() {
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        filters:\n          authz:  # <-\n            disabled: true",
    );
    let err = rejected(
        &yaml,
        "listeners[0].routes[0].filters.authz",
        "unknown filter \"authz\"",
    );
    assert_eq!(err.column, Some(11));
}

#[test]
fn locates_values_reached_through_an_alias_at_the_alias() {
    let yaml = MINIMAL.replace(
        "      - name: default\n        upstream: app\n",
        "      - &route { name: default, upstream: app }\n      - *route  # <-\n",
    );
    rejected(
        &yaml,
        "listeners[0].routes[1].name",
        "duplicate route name \"default\"",
    );
}

#[test]
fn rejects_overrides_that_do_nothing_or_too_much() {
    let with = |value: &str| {
        MINIMAL.replace(
            "upstream: app",
            &format!("upstream: app\n        filters:\n          auth: {value}  # <-"),
        )
    };
    rejected(
        &with("{}"),
        "listeners[0].routes[0].filters.auth",
        "set either `disabled: true` or `config`",
    );
    rejected(
        &with("{ disabled: true, config: {} }"),
        "listeners[0].routes[0].filters.auth",
        "not both",
    );
    rejected(
        &with("{ disabled: false }"),
        "listeners[0].routes[0].filters.auth.disabled",
        "`disabled: false` changes nothing",
    );
}

#[test]
fn rejects_paths_without_a_leading_slash() {
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        match:\n          path: { prefix: api }  # <-",
    );
    rejected(
        &yaml,
        "listeners[0].routes[0].match.path.prefix",
        "invalid path \"api\": must start with '/', like /api",
    );
}

#[test]
fn rejects_path_rules_that_are_not_exactly_one() {
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        match:\n          path: { prefix: /a, exact: /a }  # <-",
    );
    rejected(
        &yaml,
        "listeners[0].routes[0].match.path",
        "set exactly one of `exact` or `prefix`",
    );
}

#[test]
fn rejects_invalid_header_names() {
    let yaml = MINIMAL.replace("upstream: app", "upstream: app\n        match:\n          headers:\n            - name: x env  # <-\n              exact: a");
    rejected(
        &yaml,
        "listeners[0].routes[0].match.headers[0].name",
        "invalid header name \"x env\"",
    );
}

#[test]
fn rejects_header_rules_that_are_not_exactly_one() {
    let with = |rule: &str| {
        MINIMAL.replace(
            "upstream: app",
            &format!(
                "upstream: app\n        match:\n          headers:\n            - {rule}  # <-"
            ),
        )
    };
    let field = "listeners[0].routes[0].match.headers[0]";
    rejected(
        &with("{ name: x-env }"),
        field,
        "set exactly one of `exact`, `prefix` or `present: true`",
    );
    rejected(
        &with("{ name: x-env, exact: a, prefix: b }"),
        field,
        "set exactly one of",
    );
    rejected(
        &with("{ name: x-env, present: false }"),
        "listeners[0].routes[0].match.headers[0].present",
        "only `present: true` is supported",
    );
    rejected(
        &with("{ name: x-env, exact: \"a\\nb\" }"),
        "listeners[0].routes[0].match.headers[0].exact",
        "invalid header value",
    );
}

#[test]
fn rejects_route_timeout() {
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        timeout: soon  # <-",
    );
    rejected(
        &yaml,
        "listeners[0].routes[0].timeout",
        "invalid duration \"soon\"",
    );
}

#[test]
fn rejects_duplicate_upstream_names() {
    let yaml = format!("{MINIMAL}  - name: app  # <-\n    endpoints: [\"127.0.0.1:3001\"]\n");
    rejected(
        &yaml,
        "upstreams[1].name",
        "duplicate upstream name \"app\": upstreams[0] has it too",
    );
}

#[test]
fn rejects_upstream_without_endpoints() {
    let yaml = MINIMAL.replace("endpoints: [\"127.0.0.1:3000\"]", "endpoints: []  # <-");
    rejected(
        &yaml,
        "upstreams[0].endpoints",
        "at least one endpoint is required",
    );
}

#[test]
fn rejects_invalid_endpoints() {
    let with = |endpoint: &str| {
        MINIMAL.replace(
            "endpoints: [\"127.0.0.1:3000\"]",
            &format!("endpoints:\n      - \"127.0.0.1:3000\"\n      - \"{endpoint}\"  # <-"),
        )
    };
    let field = "upstreams[0].endpoints[1]";
    rejected(
        &with("app.internal"),
        field,
        "invalid endpoint \"app.internal\": the port is missing; expected host:port, like 10.0.0.5:8080",
    );
    rejected(&with("http://app:80"), field, "leave out the scheme");
    rejected(&with("app:80/v1"), field, "leave out the path");
    rejected(
        &with("app:http"),
        field,
        "the port is not a number from 1 to 65535",
    );
    rejected(&with("app:0"), field, "port 0 cannot be connected to");
    rejected(
        &with("fd00::1:80"),
        field,
        "put an IPv6 address in brackets",
    );
    rejected(&with("[fd00::zz]:80"), field, "not an IPv6 address");
    rejected(
        &with(":80"),
        field,
        "the host is not a valid name or IP address",
    );
    rejected(
        &with("bad host:80"),
        field,
        "the host is not a valid name or IP address",
    );
}

#[test]
fn rejects_upstream_timeouts() {
    let yaml = MINIMAL.replace(
        "endpoints: [\"127.0.0.1:3000\"]",
        "endpoints: [\"127.0.0.1:3000\"]\n    connect_timeout: 0s  # <-",
    );
    rejected(
        &yaml,
        "upstreams[0].connect_timeout",
        "invalid duration \"0s\": must be more than 0",
    );
    let yaml = MINIMAL.replace(
        "endpoints: [\"127.0.0.1:3000\"]",
        "endpoints: [\"127.0.0.1:3000\"]\n    timeout: 30  # <-",
    );
    rejected(
        &yaml,
        "upstreams[0].timeout",
        "invalid duration \"30\": expected a number followed by a unit, like 50ms",
    );
}
