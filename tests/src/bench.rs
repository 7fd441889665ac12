//! What the filter benches share: a runtime without a disk cache, a pooled filter with a budget
//! generous enough for a loaded machine, and a typical request head.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use weft_runtime::metrics::FilterMetrics;
use weft_runtime::{
    Direction, FailurePolicy, FilterSpec, Isolation, LoadedFilter, RequestHead, RequestInfo,
    Runtime, RuntimeOptions,
};

/// A runtime as the proxy builds it, minus the on-disk compilation cache.
pub fn runtime() -> Runtime {
    Runtime::new(
        RuntimeOptions::without_cache(),
        Arc::new(FilterMetrics::new()),
    )
    .expect("runtime")
}

/// The guest at `wasm` (one of [`crate::guests`]) configured with `config` as filter `name`,
/// pooled and failing closed.
pub fn load(
    runtime: &Runtime,
    name: &str,
    wasm: &str,
    config: &serde_json::Value,
) -> Arc<LoadedFilter> {
    let module = runtime
        .load_module(Path::new(wasm))
        .unwrap_or_else(|e| panic!("loading {wasm}: {e:#}"));
    runtime
        .load_filter(FilterSpec {
            name,
            module,
            config,
            failure_policy: FailurePolicy::FailClosed,
            isolation: Isolation::Pooled,
            // Generous: a bench measures cost, and a wall-clock budget also counts the time a
            // thread is descheduled on a busy machine; 50 ms would abort a run on a hiccup.
            time_budget: Duration::from_secs(1),
            max_memory_bytes: 32 << 20,
        })
        .unwrap_or_else(|e| panic!("configuring {name}: {e:#}"))
}

/// `GET path` over HTTP/1.1 with nine filler headers (`x-extra-0` to `x-extra-8`) and `extra`.
pub fn request(path: &'static str, extra: &[(&'static str, &str)]) -> RequestHead {
    let mut headers = HeaderMap::new();
    for i in 0..9 {
        headers.insert(
            HeaderName::try_from(format!("x-extra-{i}")).expect("valid name"),
            HeaderValue::from_static("some value"),
        );
    }
    for (name, value) in extra {
        headers.insert(*name, HeaderValue::try_from(*value).expect("valid value"));
    }
    RequestHead {
        method: Method::GET,
        uri: Uri::from_static(path),
        version: Version::HTTP_11,
        headers,
    }
}

/// An inbound request from `127.0.0.1:50000` on route `default`.
pub fn info() -> RequestInfo {
    RequestInfo {
        client: Some("127.0.0.1:50000".parse().expect("addr")),
        listener: "inbound".into(),
        direction: Direction::Inbound,
        route: Some("default".into()),
        peer_identity: None,
    }
}

/// The HS256 secret of [`hs256_token`] and [`four_filters`]' authz config.
pub const SECRET: &[u8] = b"chain-bench-secret-0123456789abcdef";

/// A JWT signed with [`SECRET`] (issuer `bench`, subject `alice`, audience `app`), valid for
/// an hour: the bearer token every benchmark request carries, so authz allows it.
pub fn hs256_token() -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use hmac::Mac as _;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT","kid":"bench"}"#);
    let claims = B64.encode(format!(
        r#"{{"iss":"bench","sub":"alice","aud":"app","exp":{}}}"#,
        now + 3600
    ));
    let input = format!("{header}.{claims}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `filters:` entries (YAML, indented for a listener) of the four first-party filters as
/// a realistic chain that lets [`hs256_token`]'s requests through: authz (HS256 JWT, a claim
/// forwarded as a header, an allow rule) → rate-limit (a per-client bucket too large to
/// trip) → header-router (two rules that do not match) → fault-injection (0 % abort, header
/// faults enabled but not requested).
pub fn four_filters() -> String {
    four_filters_from([
        crate::guests::AUTHZ,
        crate::guests::RATE_LIMIT,
        crate::guests::HEADER_ROUTER,
        crate::guests::FAULT_INJECTION,
    ])
}

/// [`four_filters`] with the modules taken from `dir` (`authz.wasm`, `rate_limit.wasm`,
/// `header_router.wasm`, `fault_injection.wasm`), say a build of the filters with another
/// profile, to measure a guest-side change against the filters the tests build. Fails naming
/// the first module that is missing.
pub fn four_filters_in(dir: &std::path::Path) -> anyhow::Result<String> {
    let module = |name: &str| {
        let path = dir.join(format!("{name}.wasm"));
        anyhow::ensure!(path.is_file(), "{}: no such file", path.display());
        Ok(path.display().to_string())
    };
    Ok(four_filters_from([
        &module("authz")?,
        &module("rate_limit")?,
        &module("header_router")?,
        &module("fault_injection")?,
    ]))
}

fn four_filters_from([authz, rate_limit, header_router, fault_injection]: [&str; 4]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    format!(
        r#"
      - name: authz
        module: {authz:?}
        config:
          jwt:
            jwks: {{ keys: [ {{ kty: oct, kid: bench, alg: HS256, k: "{key}" }} ] }}
            issuers: [bench]
            audiences: [app]
            claims_to_headers: [ {{ claim: sub, header: x-user }} ]
          rules:
            allow: [ {{ methods: [GET] }} ]
      - name: rate-limit
        module: {rate_limit:?}
        config:
          limits:
            - {{ name: per_client, key: [client_address], capacity: 1000000000, refill: {{ amount: 1000000000, interval: 1s }} }}
      - name: header-router
        module: {header_router:?}
        config:
          rules:
            - {{ name: beta, match: {{ headers: [ {{ name: x-version, exact: beta }} ] }}, upstream: app }}
            - {{ name: v2, match: {{ path: {{ prefix: /v2/ }} }}, upstream: app }}
      - name: fault-injection
        module: {fault_injection:?}
        config:
          abort: {{ status: 503, percentage: 0 }}
          header_faults: true"#,
        key = B64.encode(SECRET),
    )
}

/// The `filters:` entries of `n` no-op filters (`noop-0` …), each a real hook call into its
/// own wasm instance.
pub fn noop_filters(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "\n      - {{ name: noop-{i}, module: {:?} }}",
                crate::guests::NOOP
            )
        })
        .collect()
}

/// A proxy config with one listener on `listen` whose `filters` (from [`four_filters`] or
/// [`noop_filters`], or `" []"`) run on every request, routed to `upstream`.
pub fn proxy_config(listen: &str, upstream: std::net::SocketAddr, filters: &str) -> String {
    format!(
        r#"
listeners:
  - name: inbound
    address: {listen}
    filters:{filters}
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#
    )
}
