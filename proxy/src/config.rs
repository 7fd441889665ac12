//! The proxy's configuration file: YAML, read and validated once at startup.
//!
//! A complete file, with every key (most are optional; the comments give the defaults):
//!
//! ```yaml
//! admin:                               # optional; serves /metrics and /ready
//!   address: 127.0.0.1:9901
//! cache_dir: cache                     # optional; relative paths start at this file's directory
//! control_plane:                       # optional; filters streamed from weft-controlplane
//!   address: https://127.0.0.1:18000   # http:// or https:// (https needs `tls`)
//!   name: app-7f9c                     # this proxy's identity; default $POD_NAME, then $HOSTNAME
//!   namespace: shop                    # default $POD_NAMESPACE, then "default"
//!   labels: { app: shop }              # filters select proxies by these
//!   state_dir: state                   # default "weft-state"; the last good chain and its modules
//!   tls:                               # required for https
//!     ca: certs/ca.pem                 # the control plane's CA
//!     cert: certs/proxy.pem            # this proxy's client certificate; without cert and
//!     key: certs/proxy-key.pem         # key, the workload certificate of `identity` is used
//! identity:                            # optional; a workload certificate (X.509 SVID) from the
//!                                      # control plane, for mTLS between sidecars
//!   service_account: orders            # default $WEFT_SERVICE_ACCOUNT, then "default"; the
//!                                      # namespace is control_plane.namespace
//!   token_file: /var/run/secrets/weft/token  # the credential: a projected service-account
//!                                      # token (Kubernetes) or a bootstrap token; re-read
//!                                      # at every renewal
//! limits:                              # sizes: a number of bytes, or a number and B, KiB, MiB, GiB
//!   max_request_header_bytes: 64KiB    # default 64KiB; larger heads get 431
//!   max_request_body_bytes: 16MiB      # default 16MiB; larger bodies get 413
//!   max_buffered_body_bytes: 1MiB      # default 1MiB; bodies buffered for body hooks
//!   max_connections: 10000             # default 10000 per listener; more are closed at once
//!   request_head_timeout: 30s          # default 30s; from accept (or the first byte of the
//!                                      # next request) to a complete head, HTTP/2 preface included
//!   idle_timeout: 75s                  # default 75s; a connection with no request in flight
//!   http2_max_concurrent_streams: 128  # default 128
//!   http2_keepalive_interval: 60s      # default 60s; ping an idle HTTP/2 client (`off` disables)
//!   http2_keepalive_timeout: 20s       # default 20s; close when a ping is not answered in time
//!   http2_max_premature_resets: 100    # default 100; GOAWAY once a client has reset this many
//!                                      # streams before their response, if that is half or more
//!   max_concurrent_calls_per_filter: 1024  # default 1024; calls of a filter that yields (runs
//!                                      # past 1 ms) in progress at once; more get its failure policy
//!   max_active_delays_per_filter: 1024 # default 1024; requests a filter holds in `delay`
//!                                      # actions at once; further delays are skipped
//!   max_outbound_calls_per_filter: 1024 # default 1024; `call`s of a filter in flight at
//!                                      # once; more get `too-many-calls`
//! listeners:                           # at least one
//!   - name: ingress                    # unique; letters, digits, '_', '.', '-'
//!     address: 0.0.0.0:8080            # IP:port, unique (port 0 picks a free port)
//!     direction: inbound               # inbound (default) | outbound
//!     paths:                           # optional; how request paths are normalized before
//!       normalize: true                # routing and filters (default true: RFC 3986 dot
//!                                      # segments, unreserved characters percent-decoded)
//!       merge_slashes: true            # default true: `//a` is `/a`
//!       escaped_slashes: reject        # reject (default; 400) | keep: `%2F`, `%5C` in a path
//!     tls:                             # optional; needs `identity`
//!       mode: strict                   # disabled (default) | strict: mTLS only, from workload
//!                                      # certificates of the mesh | permissive: mTLS and
//!                                      # plaintext on the same port
//!     peer_identity_header: x-weft-peer-identity  # optional; forwards the caller's SPIFFE
//!                                      # ID upstream; a client-sent copy is always removed
//!     filters:                         # optional; names unique within the listener
//!       - name: auth
//!         module: filters/auth.wasm    # relative to this file's directory; must exist
//!         config:                      # optional; any YAML, handed to the filter as JSON
//!           issuer: https://id.example.com
//!           audiences: [app]
//!         failure_policy: fail_closed  # fail_closed (default) | fail_open
//!         time_budget: 20ms            # default 50ms; more than 0, at most 10s
//!         isolation: pooled            # pooled (default) | per_request
//!         max_memory: 16MiB            # default 32MiB; 1MiB to 4GiB
//!       - name: ratelimit
//!         module: filters/ratelimit.wasm
//!     routes:                          # at least one
//!       - name: billing-api            # unique within the listener
//!         match:                       # optional; default: every path
//!           path: { prefix: /billing } # or { exact: /billing/health }
//!           headers:                   # all must match; one rule each
//!             - { name: x-env, exact: canary }
//!             - { name: x-tenant, prefix: acme- }
//!             - { name: authorization, present: true }
//!         upstream: billing            # the name of an upstream below
//!         timeout: 5s                  # optional; overrides the upstream's timeout
//!         filters:                     # optional; keyed by a filter of this listener
//!           ratelimit: { disabled: true }
//!           auth: { config: { issuer: https://id.example.com, audiences: [billing] } }
//!       - name: default
//!         upstream: app
//! upstreams:
//!   - name: app                        # unique
//!     endpoints: ["127.0.0.1:3000"]    # at least one host:port
//!   - name: billing
//!     endpoints: ["billing-0.internal:8443", "[fd00::12]:8443"]
//!     protocol: http2                  # auto (default; as downstream) | http1 | http2 (h2c)
//!     connect_timeout: 500ms           # default 1s
//!     timeout: 10s                     # default 30s; until the response head arrives
//!   - name: reviews                    # another sidecar: mTLS with workload certificates
//!     endpoints: ["10.0.3.7:15006"]
//!     tls:                             # optional; needs `identity`
//!       mode: mesh                     # disabled (default) | mesh
//!       identity: spiffe://cluster.local/ns/shop/sa/reviews  # optional; without it, any
//!                                      # workload of the trust domain is accepted
//! ```
//!
//! [`Config::load`] reads a file; every error names the file, the line and column, and the
//! field, like
//! `weft.yaml:75:19: listeners[0].routes[0].upstream: unknown upstream "bilings" (known: app, billing, reviews)`.
//!
//! Parsing happens in two steps: serde reads the file into the private `Raw*` structs, which
//! reject unknown keys and wrong types; then [`Config::from_yaml`] converts those into the public
//! types, parsing durations, sizes and addresses and checking every cross-reference. Errors
//! from the second step are located by walking the YAML again (see [`weft_yaml::locate`]).

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use self::raw::RawConfig;
use self::validate::Context;
pub use weft_runtime::policy::{Direction, FailurePolicy, Isolation, limits as filter_limits};
pub use weft_traffic::policy::{Policy, RetryPolicy};
pub use weft_yaml::ConfigError;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The whole configuration file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The admin server (`/metrics`, `/ready`); none if the key is absent.
    pub admin: Option<AdminConfig>,
    /// Directory for the proxy's caches, resolved against the config file's directory.
    pub cache_dir: Option<PathBuf>,
    /// Size limits for requests.
    pub limits: Limits,
    /// The listeners, in file order; at least one.
    pub listeners: Vec<ListenerConfig>,
    /// The upstreams, in file order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Where dynamic filters come from; none: only the filters in this file.
    pub control_plane: Option<ControlPlaneConfig>,
    /// This proxy's workload identity; none: no mTLS between sidecars.
    pub identity: Option<IdentityConfig>,
    /// Which discovered services to watch (with a control plane); none: routes and filters
    /// name only the upstreams of this file, and an unknown name is an error at load.
    pub discovery: Option<DiscoveryConfig>,
    /// The file this was read from, or `<inline>`; used in messages.
    pub source: PathBuf,
}

/// Service discovery from the control plane (key `discovery`): which services to watch and
/// how to reach them. Without a control plane there is nothing to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Namespaces whose services the proxy wants; empty: every namespace.
    pub namespaces: Vec<String>,
    /// The cluster's DNS domain, for authorities like `reviews.shop.svc.cluster.local`.
    pub cluster_domain: String,
    /// How discovered endpoints are connected to: plaintext, or mesh mTLS (any mesh
    /// identity).
    pub tls: UpstreamTls,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            cluster_domain: "cluster.local".to_owned(),
            tls: UpstreamTls::Disabled,
        }
    }
}

/// The control plane this proxy subscribes to for filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneConfig {
    /// `http://host:port` or `https://host:port`.
    pub address: String,
    /// This proxy's name.
    pub name: String,
    /// This proxy's namespace.
    pub namespace: String,
    /// This proxy's labels, matched by filter selectors.
    pub labels: BTreeMap<String, String>,
    /// Where the last good chain and its modules are kept, resolved against the file's directory.
    pub state_dir: PathBuf,
    /// Client certificate and CA; required for `https://`.
    pub tls: Option<ClientTls>,
}

/// PEM files for mTLS to the control plane, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signed the control plane's certificate.
    pub ca: PathBuf,
    /// This proxy's certificate chain and its private key; none: the workload certificate
    /// of [`Config::identity`] (the control plane also trusts its own mesh's certificates).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The workload identity this proxy asks the control plane to certify:
/// `spiffe://<trust domain>/ns/<control_plane.namespace>/sa/<service_account>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The namespace (the control plane's `namespace`).
    pub namespace: String,
    /// The service account the proxy runs as.
    pub service_account: String,
    /// The credential proving it, read again at every renewal (projected tokens rotate).
    pub token_file: PathBuf,
}

/// What an inbound listener accepts (key `tls.mode`), as Istio's `PeerAuthentication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundTls {
    /// Plaintext only. The default.
    #[default]
    Disabled,
    /// mTLS and plaintext on one port, told apart by the first bytes: for moving a mesh to
    /// mTLS one service at a time.
    Permissive,
    /// mTLS only, with a workload certificate that chains to the mesh's trust anchors.
    Strict,
}

/// How the proxy connects to an upstream (key `tls`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamTls {
    /// Plaintext. The default.
    #[default]
    Disabled,
    /// mTLS with this proxy's workload certificate; the upstream must present a workload
    /// certificate of the mesh, with exactly this identity when one is given.
    Mesh {
        /// The SPIFFE ID the upstream must have.
        identity: Option<weft_identity::SpiffeId>,
    },
}

/// The admin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where `/metrics` and `/ready` are served.
    pub address: SocketAddr,
}

/// Sizes, counts and timeouts that protect the proxy from large, slow or abusive clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest request head (request line and headers) accepted. Default 64 KiB.
    pub max_request_header_bytes: usize,
    /// The largest request body accepted. Default 16 MiB.
    pub max_request_body_bytes: u64,
    /// The largest body buffered in memory for a filter's body hooks. Default 1 MiB.
    pub max_buffered_body_bytes: usize,
    /// Connections each listener serves at once; more are closed as soon as accepted.
    /// Default 10,000.
    pub max_connections: usize,
    /// From accepting a connection, or from the first byte of a request, to its complete
    /// head (protocol detection and the HTTP/2 preface included). Default 30 s (nginx's
    /// `client_header_timeout` is 60 s).
    pub request_head_timeout: Duration,
    /// How long a connection with no request in flight stays open. Default 75 s (nginx's
    /// `keepalive_timeout`).
    pub idle_timeout: Duration,
    /// Streams one HTTP/2 connection may have open. Default 128.
    pub http2_max_concurrent_streams: u32,
    /// How often an HTTP/2 connection is pinged; `None`: never. Default 60 s.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed. Default 20 s.
    pub http2_keepalive_timeout: Duration,
    /// Streams a client may reset before their response (as in the HTTP/2 rapid-reset
    /// attack) before its connection gets GOAWAY, if they are half or more of its streams.
    /// Default 100.
    pub http2_max_premature_resets: u32,
    /// Calls of one filter in progress at once while its calls yield (after one ran past an
    /// epoch tick); more are answered by its failure policy. Default 1024.
    pub max_concurrent_calls_per_filter: u32,
    /// Requests one filter may hold in `delay` actions at once; further delays are skipped
    /// (the request goes on at once, or gets the delay's response at once) and counted in
    /// `weft_filter_delays_overflow_total`. Default 1024 (Envoy's fault filter:
    /// `max_active_faults`).
    pub max_active_delays_per_filter: u32,
    /// Outbound calls (the `call` action) one filter may have in flight at once; more get
    /// `too-many-calls` at once. Default 1024.
    pub max_outbound_calls_per_filter: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_header_bytes: (64 * KIB) as usize,
            max_request_body_bytes: 16 * MIB,
            max_buffered_body_bytes: MIB as usize,
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
    }
}

/// How a listener normalizes request paths before routing and filters (key `paths`), as
/// Envoy's `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action`.
///
/// The normalized path is the one routes match, filters read and the upstream receives. A
/// path that climbs above `/`, holds a NUL, a `\` or a malformed escape is refused with 400
/// whatever the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNormalization {
    /// RFC 3986 dot-segment removal and decoding of percent-encoded unreserved characters.
    /// Default on.
    pub enabled: bool,
    /// `//` is `/`. Default on.
    pub merge_slashes: bool,
    /// What to do with `%2F` and `%5C`.
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathNormalization {
    fn default() -> Self {
        Self {
            enabled: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// What a listener does with an encoded `/` or `\` in a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Answer 400. The default: a server behind the proxy may decode them into separators.
    #[default]
    Reject,
    /// Forward them encoded (upper-cased), as part of a segment.
    Keep,
}

/// One address the proxy accepts connections on, with its filter chain and routes.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique among listeners.
    pub name: String,
    /// Where to listen.
    pub address: SocketAddr,
    /// Whether traffic comes into the application or leaves it.
    pub direction: Direction,
    /// How request paths are normalized.
    pub paths: PathNormalization,
    /// Whether the listener speaks mTLS.
    pub tls: InboundTls,
    /// The header that carries the caller's SPIFFE ID upstream; none: not forwarded.
    pub peer_identity_header: Option<http::HeaderName>,
    /// The filter chain, in file order.
    pub filters: Vec<FilterConfig>,
    /// The routes, in file order; at least one.
    pub routes: Vec<RouteConfig>,
}

/// One WebAssembly filter in a listener's chain.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Unique within the listener; letters, digits, `_`, `.` and `-`.
    pub name: String,
    /// The component file, resolved against the config file's directory. It existed at load.
    pub module: PathBuf,
    /// The filter's own configuration, converted from YAML; `Null` when absent.
    pub config: serde_json::Value,
    /// What to do with the request when the filter fails.
    pub failure_policy: FailurePolicy,
    /// How long one hook call may run. Default 50ms; more than 0, at most 10s.
    pub time_budget: Duration,
    /// How instances are shared between requests.
    pub isolation: Isolation,
    /// The most linear memory one instance may use (key `max_memory`). Default 32 MiB;
    /// between 1 MiB and 4 GiB.
    pub max_memory_bytes: usize,
}

/// Which requests go to which upstream, and per-route filter changes.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique within the listener.
    pub name: String,
    /// Which requests this route takes (key `match`).
    pub matcher: RouteMatch,
    /// Where the route sends requests.
    pub target: RouteTarget,
    /// Overrides the upstream's response timeout for this route.
    pub timeout: Option<Duration>,
    /// Overrides the upstream's retry policy for this route.
    pub retries: Option<RetryPolicy>,
    /// Changes to the listener's filters for this route, keyed by filter name.
    pub filters: BTreeMap<String, FilterOverride>,
}

/// Where a route sends requests (keys `upstream`, `split` or `by_authority`).
#[derive(Debug, Clone, PartialEq)]
pub enum RouteTarget {
    /// One upstream of [`Config::upstreams`] or a discovered service, optionally a subset of
    /// its endpoints (`backend@v2`).
    Upstream(UpstreamRef),
    /// A weighted split: each request goes to one of these (a canary: 90/10 across subsets).
    Split(Vec<(UpstreamRef, u32)>),
    /// The discovered service the request's authority names (`reviews`, `reviews.shop`,
    /// `reviews.shop.svc.cluster.local`, with or without a port).
    ByAuthority,
}

/// An upstream (or discovered service) by name, and optionally one of its subsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRef {
    /// The upstream's (or service's) name.
    pub name: String,
    /// One of its subsets, if named.
    pub subset: Option<String>,
}

impl UpstreamRef {
    /// Reads `name` or `name@subset`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('@') {
            Some((name, subset)) => Self {
                name: name.to_owned(),
                subset: Some(subset.to_owned()),
            },
            None => Self {
                name: text.to_owned(),
                subset: None,
            },
        }
    }
}

impl std::fmt::Display for UpstreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subset {
            Some(subset) => write!(f, "{}@{subset}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Conditions a request must all meet to take a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Default: `Prefix("/")`, every path.
    pub path: PathMatch,
    /// Every rule must match.
    pub headers: Vec<HeaderMatch>,
}

impl Default for RouteMatch {
    fn default() -> Self {
        Self {
            path: PathMatch::Prefix("/".to_owned()),
            headers: Vec::new(),
        }
    }
}

/// A rule on the request path. The string starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
}

/// A rule on one request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// The header, lowercase.
    pub name: http::HeaderName,
    /// What its value must be.
    pub rule: HeaderRule,
}

/// What a header's value must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    /// Equal to this.
    Exact(String),
    /// Starting with this.
    Prefix(String),
    /// Anything, as long as the header is there.
    Present,
}

/// A route's change to one of its listener's filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOverride {
    /// Skip the filter on this route.
    Disabled,
    /// Run the filter with this configuration instead of the listener's.
    Config(serde_json::Value),
}

/// A named set of equivalent endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Unique among upstreams.
    pub name: String,
    /// At least one, unless discovered endpoints are yet to come.
    pub endpoints: Vec<EndpointConfig>,
    /// Which HTTP version to speak to the upstream.
    pub protocol: UpstreamProtocol,
    /// How long to wait for a connection. Default 1s.
    pub connect_timeout: Duration,
    /// How long to wait for the whole response head, every try included. Default 30s.
    pub timeout: Duration,
    /// How long a pooled connection may stay unused. Default 90s.
    pub idle_timeout: Duration,
    /// Plaintext or mesh mTLS.
    pub tls: UpstreamTls,
    /// Load balancing, retries, circuit breaker, outlier detection, health checks, subsets.
    pub policy: Policy,
}

/// One endpoint of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// `host:port`; the host is a name, an IPv4 address or a bracketed IPv6 address.
    pub address: String,
    /// Relative share of requests, at least 1. Default 1.
    pub weight: u32,
    /// For subsets (`version: v2`).
    pub labels: BTreeMap<String, String>,
    /// False: terminating, used only when no ready endpoint is left.
    pub ready: bool,
}

impl EndpointConfig {
    /// A ready endpoint of weight 1 without labels.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            weight: 1,
            labels: BTreeMap::new(),
            ready: true,
        }
    }
}

/// Which HTTP version to speak to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// The version the downstream client used. The default.
    #[default]
    Auto,
    /// Always HTTP/1.1.
    Http1,
    /// Always HTTP/2 over cleartext, with prior knowledge (h2c).
    Http2,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read the config file: {err}"),
        })?;
        Config::from_yaml(&src, path)
    }

    /// Parses and validates a configuration from YAML text.
    ///
    /// `origin` is the file the text came from: messages name it, and relative paths in the
    /// file (`module`, `cache_dir`) are resolved against its directory. For text that has no
    /// file, pass `Path::new("<inline>")`: relative paths then start at the working directory.
    pub fn from_yaml(src: &str, origin: &Path) -> Result<Config, ConfigError> {
        let cx = Context::new(src, origin);
        let raw: RawConfig = cx.parse()?;
        cx.config(raw)
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|upstream| upstream.name == name)
    }
}

#[cfg(test)]
mod tests;
