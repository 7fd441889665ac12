//! Traffic policies: how to spread requests over an upstream's endpoints and what to do when
//! one fails. The same schema is written in three places and read by this one module:
//!
//! - a proxy config's `upstreams[]` (the keys sit beside `name` and `endpoints`), and a
//!   route's `retries`;
//! - a directory-source `Service`'s `spec.trafficPolicy` (or a Kubernetes Service's
//!   `weft.dev/traffic-policy` annotation), checked by the control plane;
//! - the wire: `Service.policy_json`, the same keys as JSON, checked again by the proxy.
//!
//! ```yaml
//! connect_timeout: 1s        # TCP connect (+ mTLS handshake)
//! timeout: 15s               # whole request, until the response head (see below)
//! idle_timeout: 90s          # a pooled connection left unused is closed
//! load_balancer: least_request   # round_robin | least_request | random
//!                                # | {consistent_hash: {header: x-user}} | {consistent_hash: {cookie: session}}
//! retries:
//!   attempts: 2              # retries after the first try (0–10)
//!   per_try_timeout: 500ms
//!   on: [connect-failure, reset, 502, 503, 504]   # also gateway-error, 5xx, any status 400–599
//!   grpc_on: [unavailable]   # gRPC status names or numbers
//!   backoff: {base: 25ms, max: 250ms}
//!   max_replay_body: 64KiB   # a request body over this is not retried
//!   budget: {ratio: 0.2, min_per_second: 10, ttl: 10s}
//!   attempt_count_header: false   # true: each try carries `x-weft-attempt-count: <n>` (1, 2, …)
//! circuit_breaker: {max_connections: 1024, max_pending_requests: 1024, max_requests: 1024}
//! outlier_detection: {consecutive_failures: 5, base_ejection_time: 30s, max_ejection_time: 5m, max_ejection_percent: 10}
//! health_check: {path: /healthz, interval: 5s, timeout: 1s, unhealthy_threshold: 3, healthy_threshold: 2}
//! subsets: {v1: {version: v1}, v2: {version: v2}}
//! ```
//!
//! **Timeouts.** `timeout` bounds the whole request up to the upstream's response head, every
//! try and backoff included; once the head has arrived a streaming body is never cut by it
//! (the connection's idle timeouts still apply). `per_try_timeout` bounds one try the same way;
//! a try that runs out is retried (when `retries` allows) on another endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_yaml::{ConfigError, Document, FieldPath};

/// The most retries a policy may ask for: a bounded number, so a retry loop always ends.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// A checked traffic policy. Unset timeouts fall back to the proxy's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub connect_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub load_balancer: LoadBalancer,
    pub retries: Option<RetryPolicy>,
    pub circuit_breaker: CircuitBreaker,
    pub outlier_detection: Option<OutlierDetection>,
    pub health_check: Option<HealthCheck>,
    /// Subsets by name: the labels an endpoint must all have to belong.
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
}

/// How an endpoint is chosen for a request. Endpoint weights count in every one of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LoadBalancer {
    /// Smooth weighted round robin (as nginx's).
    #[default]
    RoundRobin,
    /// The better of two random endpoints by outstanding requests × latency EWMA
    /// (Linkerd's default: power of two choices).
    LeastRequest,
    /// A weighted random endpoint.
    Random,
    /// A ring of endpoints hashed by a request value, so the same value goes to the same
    /// endpoint and an endpoint that leaves moves only its own keys. A request without the
    /// value goes round robin.
    ConsistentHash(HashOn),
}

/// The request value a consistent hash is taken of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Header(http::HeaderName),
    Cookie(String),
}

/// When and how often to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub on: RetryOn,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A request whose body is larger than this (or still streaming past it) is not retried.
    pub max_replay_body: u64,
    pub budget: BudgetConfig,
    /// Whether each try carries [`ATTEMPT_COUNT_HEADER`] (Envoy's `x-envoy-attempt-count`);
    /// off by default: retries are accounted in metrics, not in headers.
    pub attempt_count_header: bool,
}

/// The request header that numbers a try (1 for the first), when a retry policy asks for it.
pub const ATTEMPT_COUNT_HEADER: &str = "x-weft-attempt-count";

/// What counts as retryable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// No connection could be made: the upstream never saw the request.
    pub connect_failure: bool,
    /// The connection failed before a response head arrived (reset, refused stream, a try's
    /// timeout).
    pub reset: bool,
    /// Response statuses, as a bit set over 400–599.
    statuses: [u64; 4],
    /// gRPC status codes (bit set over 0–16) in a response's `grpc-status` header.
    pub grpc: u32,
}

impl RetryOn {
    /// Whether a response with this status is retried.
    pub fn status(&self, status: u16) -> bool {
        let Some(i) = status.checked_sub(400).filter(|i| *i < 200) else {
            return false;
        };
        self.statuses[usize::from(i / 64)] & (1 << (i % 64)) != 0
    }

    fn add_status(&mut self, status: u16) {
        let i = status - 400;
        self.statuses[usize::from(i / 64)] |= 1 << (i % 64);
    }

    /// Whether a gRPC status code is retried.
    pub fn grpc_status(&self, code: u32) -> bool {
        code < 32 && self.grpc & (1 << code) != 0
    }
}

/// A retry budget, as Linkerd's: retries may add at most `ratio` of the requests of the last
/// `ttl`, plus `min_per_second`, so that during an outage retries cannot multiply the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    pub ratio: f64,
    pub min_per_second: u32,
    pub ttl: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// Limits per upstream; over one, the proxy answers 503 at once, naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Connections open to all the upstream's endpoints.
    pub max_connections: u32,
    /// Requests waiting for a connection while `max_connections` are open.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
}

impl Default for CircuitBreaker {
    /// Envoy's defaults.
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
        }
    }
}

impl CircuitBreaker {
    /// The most any limit may be set to.
    pub const MAX: u32 = 1 << 20;
}

/// Passive health: an endpoint that fails `consecutive_failures` times in a row (5xx, connect
/// failure, reset, timeout) is left out for `base_ejection_time` × its number of ejections (at
/// most `max_ejection_time`); never more than `max_ejection_percent` of the endpoints at once
/// (but always at least one may be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    pub consecutive_failures: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Active health: `GET path` on every endpoint every `interval`; a 2xx within `timeout` is a
/// pass. `unhealthy_threshold` failures in a row take an endpoint out, `healthy_threshold`
/// passes bring it back. A new endpoint is used once its first check passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

/// A policy as written. `Serialize` gives the wire's `policy_json`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a traffic policy: a mapping with `load_balancer`, `timeout`, `retries`, `circuit_breaker`, `outlier_detection`, `health_check`, `subsets`, …"
)]
pub struct RawPolicy {
    #[serde(
        default,
        alias = "connectTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(
        default,
        alias = "idleTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<String>,
    #[serde(
        default,
        alias = "loadBalancer",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer: Option<RawLoadBalancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RawRetries>,
    #[serde(
        default,
        alias = "circuitBreaker",
        skip_serializing_if = "Option::is_none"
    )]
    pub circuit_breaker: Option<RawCircuitBreaker>,
    #[serde(
        default,
        alias = "outlierDetection",
        skip_serializing_if = "Option::is_none"
    )]
    pub outlier_detection: Option<RawOutlierDetection>,
    #[serde(
        default,
        alias = "healthCheck",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsets: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// `round_robin`, or `{consistent_hash: {header: NAME}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "round_robin, least_request, random, or {consistent_hash: {header: NAME}} / {consistent_hash: {cookie: NAME}}"
)]
pub enum RawLoadBalancer {
    Name(String),
    Hash {
        #[serde(alias = "consistentHash")]
        consistent_hash: RawHashOn,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with one of `header` or `cookie`"
)]
pub struct RawHashOn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a retry policy: a mapping with `attempts`, `per_try_timeout`, `on`, `grpc_on`, `backoff`, `max_replay_body`, `budget` and/or `attempt_count_header`"
)]
pub struct RawRetries {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    #[serde(
        default,
        alias = "perTryTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<Scalar>>,
    #[serde(default, alias = "grpcOn", skip_serializing_if = "Option::is_none")]
    pub grpc_on: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<RawBackoff>,
    #[serde(
        default,
        alias = "maxReplayBody",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_replay_body: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RawBudget>,
    #[serde(
        default,
        alias = "attemptCountHeader",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_count_header: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `base` and/or `max`")]
pub struct RawBackoff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `ratio`, `min_per_second` and/or `ttl`"
)]
pub struct RawBudget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(
        default,
        alias = "minPerSecond",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_per_second: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `max_connections`, `max_pending_requests` and/or `max_requests`"
)]
pub struct RawCircuitBreaker {
    #[serde(
        default,
        alias = "maxConnections",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connections: Option<i64>,
    #[serde(
        default,
        alias = "maxPendingRequests",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_pending_requests: Option<i64>,
    #[serde(
        default,
        alias = "maxRequests",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_requests: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `consecutive_failures`, `base_ejection_time`, `max_ejection_time` and/or `max_ejection_percent`"
)]
pub struct RawOutlierDetection {
    #[serde(
        default,
        alias = "consecutiveFailures",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_failures: Option<i64>,
    #[serde(
        default,
        alias = "baseEjectionTime",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_ejection_time: Option<String>,
    #[serde(
        default,
        alias = "maxEjectionTime",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ejection_time: Option<String>,
    #[serde(
        default,
        alias = "maxEjectionPercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ejection_percent: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `path` and optionally `interval`, `timeout`, `unhealthy_threshold`, `healthy_threshold`"
)]
pub struct RawHealthCheck {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(
        default,
        alias = "unhealthyThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub unhealthy_threshold: Option<i64>,
    #[serde(
        default,
        alias = "healthyThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub healthy_threshold: Option<i64>,
}

/// A string or a number, kept as written until it is checked (`503`, `gateway-error`, `64KiB`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, expecting = "a string or a number")]
pub enum Scalar {
    Number(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Text(t) => f.write_str(t),
        }
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

/// Checks a policy written at `path` of `doc`; errors name the file, line and field.
pub fn check(doc: &Document<'_>, path: &FieldPath, raw: RawPolicy) -> Result<Policy> {
    let c = Checker { doc };
    let policy = Policy {
        connect_timeout: c.opt_duration(path, "connect_timeout", raw.connect_timeout)?,
        timeout: c.opt_duration(path, "timeout", raw.timeout)?,
        idle_timeout: c.opt_duration(path, "idle_timeout", raw.idle_timeout)?,
        load_balancer: match raw.load_balancer {
            None => LoadBalancer::default(),
            Some(lb) => c.load_balancer(&path.key("load_balancer"), lb)?,
        },
        retries: raw
            .retries
            .map(|r| check_retries(doc, &path.key("retries"), r))
            .transpose()?,
        circuit_breaker: match raw.circuit_breaker {
            None => CircuitBreaker::default(),
            Some(cb) => c.circuit_breaker(&path.key("circuit_breaker"), cb)?,
        },
        outlier_detection: raw
            .outlier_detection
            .map(|o| c.outlier(&path.key("outlier_detection"), o))
            .transpose()?,
        health_check: raw
            .health_check
            .map(|h| c.health_check(&path.key("health_check"), h))
            .transpose()?,
        subsets: match raw.subsets {
            None => BTreeMap::new(),
            Some(subsets) => c.subsets(&path.key("subsets"), subsets)?,
        },
    };
    Ok(policy)
}

/// Checks a retry policy written at `path` of `doc` (a route's `retries`).
pub fn check_retries(doc: &Document<'_>, path: &FieldPath, raw: RawRetries) -> Result<RetryPolicy> {
    Checker { doc }.retries(path, raw)
}

/// Reads and checks a policy sent as JSON (`Service.policy_json`); `origin` names it in
/// errors. Empty text is the default policy.
pub fn from_json(json: &str, origin: &Path) -> Result<Policy> {
    if json.trim().is_empty() {
        return Ok(Policy::default());
    }
    // JSON is YAML: the same reader gives the same messages, with positions in the JSON.
    let doc = Document::new(json, origin);
    let raw: RawPolicy = doc.parse()?;
    check(&doc, &FieldPath::root(), raw)
}

impl RawPolicy {
    /// The policy as the wire's `policy_json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

struct Checker<'d, 'a> {
    doc: &'d Document<'a>,
}

impl Checker<'_, '_> {
    fn error(&self, path: &FieldPath, message: impl Into<String>) -> ConfigError {
        self.doc.error(path, message)
    }

    fn opt_duration(
        &self,
        path: &FieldPath,
        key: &str,
        text: Option<String>,
    ) -> Result<Option<Duration>> {
        text.map(|t| self.duration(&path.key(key), &t)).transpose()
    }

    fn duration(&self, path: &FieldPath, text: &str) -> Result<Duration> {
        let d = weft_yaml::parse_duration(text).map_err(|_| {
            self.error(
                path,
                format!(
                    "invalid duration {text:?}: expected a number followed by a unit, like 50ms"
                ),
            )
        })?;
        if d.is_zero() {
            return Err(self.error(
                path,
                format!("invalid duration {text:?}: must be more than 0"),
            ));
        }
        // A day is longer than any request or ejection should be; it also keeps every later
        // multiplication and `Instant` addition far from overflow.
        if d > Duration::from_secs(86_400) {
            return Err(self.error(
                path,
                format!("invalid duration {text:?}: must be at most 1d"),
            ));
        }
        Ok(d)
    }

    fn count(&self, path: &FieldPath, value: i64, min: i64, max: i64) -> Result<u32> {
        if value < min || value > max {
            return Err(self.error(
                path,
                format!("{value} is out of range: must be from {min} to {max}"),
            ));
        }
        u32::try_from(value).map_err(|_| self.error(path, format!("{value} is out of range")))
    }

    fn load_balancer(&self, path: &FieldPath, raw: RawLoadBalancer) -> Result<LoadBalancer> {
        match raw {
            RawLoadBalancer::Name(name) => match name.as_str() {
                "round_robin" | "ROUND_ROBIN" => Ok(LoadBalancer::RoundRobin),
                "least_request" | "LEAST_REQUEST" => Ok(LoadBalancer::LeastRequest),
                "random" | "RANDOM" => Ok(LoadBalancer::Random),
                other => Err(self.error(
                    path,
                    format!(
                        "unknown load balancer {other:?}: expected round_robin, least_request, random, or {{consistent_hash: {{header: NAME}}}}"
                    ),
                )),
            },
            RawLoadBalancer::Hash { consistent_hash } => {
                let path = path.key("consistent_hash");
                match (consistent_hash.header, consistent_hash.cookie) {
                    (Some(header), None) => {
                        let name = http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                            self.error(&path.key("header"), format!("{header:?} is not a header name"))
                        })?;
                        Ok(LoadBalancer::ConsistentHash(HashOn::Header(name)))
                    }
                    (None, Some(cookie)) => {
                        if cookie.is_empty()
                            || !cookie.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
                        {
                            return Err(self.error(
                                &path.key("cookie"),
                                format!("{cookie:?} is not a cookie name"),
                            ));
                        }
                        Ok(LoadBalancer::ConsistentHash(HashOn::Cookie(cookie)))
                    }
                    _ => Err(self.error(&path, "give exactly one of `header` or `cookie`")),
                }
            }
        }
    }

    fn retries(&self, path: &FieldPath, raw: RawRetries) -> Result<RetryPolicy> {
        let attempts = match raw.attempts {
            None => 2,
            Some(n) if n > i64::from(MAX_RETRY_ATTEMPTS) || n < 0 => {
                return Err(self.error(
                    &path.key("attempts"),
                    format!(
                        "{n} retries: must be from 0 to {MAX_RETRY_ATTEMPTS} (unbounded retries are refused: they can loop)"
                    ),
                ));
            }
            Some(n) => u32::try_from(n).unwrap_or(0),
        };
        let mut on = RetryOn::default();
        match raw.on {
            None => {
                on.connect_failure = true;
                on.reset = true;
                for s in [502, 503, 504] {
                    on.add_status(s);
                }
            }
            Some(list) => {
                for (i, item) in list.iter().enumerate() {
                    let at = path.key("on").index(i);
                    match item {
                        Scalar::Number(n) if (400..=599).contains(n) => {
                            on.add_status(u16::try_from(*n).unwrap_or(500));
                        }
                        Scalar::Text(t)
                            if t.parse::<u16>().is_ok_and(|n| (400..=599).contains(&n)) =>
                        {
                            on.add_status(t.parse().unwrap_or(500));
                        }
                        Scalar::Text(t) => match t.as_str() {
                            "connect-failure" | "connect_failure" => on.connect_failure = true,
                            "reset" | "refused-stream" => on.reset = true,
                            "gateway-error" | "gateway_error" => {
                                for s in [502, 503, 504] {
                                    on.add_status(s);
                                }
                            }
                            "5xx" => {
                                for s in 500..=599 {
                                    on.add_status(s);
                                }
                            }
                            other => {
                                return Err(self.error(
                                    &at,
                                    format!(
                                        "unknown retry condition {other:?}: expected connect-failure, reset, gateway-error, 5xx or a status from 400 to 599"
                                    ),
                                ));
                            }
                        },
                        Scalar::Number(n) => {
                            return Err(self.error(
                                &at,
                                format!("status {n} cannot be retried: give one from 400 to 599"),
                            ));
                        }
                    }
                }
            }
        }
        for (i, item) in raw.grpc_on.iter().flatten().enumerate() {
            let at = path.key("grpc_on").index(i);
            let code = match item {
                Scalar::Number(n) if (0..=16).contains(n) => u32::try_from(*n).unwrap_or(0),
                Scalar::Text(t) => grpc_code(t).ok_or_else(|| {
                    self.error(
                        &at,
                        format!("unknown gRPC status {t:?}: expected a name like unavailable or a code from 0 to 16"),
                    )
                })?,
                Scalar::Number(n) => {
                    return Err(self.error(&at, format!("gRPC status {n}: must be from 0 to 16")));
                }
            };
            on.grpc |= 1 << code;
        }
        let backoff = raw.backoff.unwrap_or_default();
        let backoff_base = match backoff.base {
            None => Duration::from_millis(25),
            Some(t) => self.duration(&path.key("backoff").key("base"), &t)?,
        };
        let backoff_max = match backoff.max {
            None => (backoff_base * 10).max(Duration::from_millis(250)),
            Some(t) => self.duration(&path.key("backoff").key("max"), &t)?,
        };
        if backoff_max < backoff_base {
            return Err(self.error(&path.key("backoff").key("max"), "must be at least `base`"));
        }
        let max_replay_body = match raw.max_replay_body {
            None => 64 << 10,
            Some(s) => {
                let at = path.key("max_replay_body");
                let bytes =
                    weft_yaml::parse_size(&s.to_string()).map_err(|e| self.error(&at, e))?;
                if bytes > 16 << 20 {
                    return Err(self.error(&at, "must be at most 16MiB: every retryable body is kept in memory until its request ends"));
                }
                bytes
            }
        };
        let defaults = BudgetConfig::default();
        let budget = match raw.budget {
            None => defaults,
            Some(b) => {
                let at = path.key("budget");
                let ratio = b.ratio.unwrap_or(defaults.ratio);
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(self.error(
                        &at.key("ratio"),
                        format!("{ratio}: must be from 0 to 1 (retries per request)"),
                    ));
                }
                let min_per_second = match b.min_per_second {
                    None => defaults.min_per_second,
                    Some(n) => self.count(&at.key("min_per_second"), n, 0, 100_000)?,
                };
                let ttl = match b.ttl {
                    None => defaults.ttl,
                    Some(t) => {
                        let ttl = self.duration(&at.key("ttl"), &t)?;
                        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
                            return Err(self.error(&at.key("ttl"), "must be from 1s to 60s"));
                        }
                        ttl
                    }
                };
                if ratio == 0.0 && min_per_second == 0 && attempts > 0 {
                    return Err(self.error(
                        &at,
                        "a budget of 0 (ratio 0 and min_per_second 0) lets no retry through: set `attempts: 0` to turn retries off",
                    ));
                }
                BudgetConfig {
                    ratio,
                    min_per_second,
                    ttl,
                }
            }
        };
        Ok(RetryPolicy {
            attempts,
            per_try_timeout: self.opt_duration(path, "per_try_timeout", raw.per_try_timeout)?,
            on,
            backoff_base,
            backoff_max,
            max_replay_body,
            budget,
            attempt_count_header: raw.attempt_count_header.unwrap_or(false),
        })
    }

    fn circuit_breaker(&self, path: &FieldPath, raw: RawCircuitBreaker) -> Result<CircuitBreaker> {
        let d = CircuitBreaker::default();
        let max = i64::from(CircuitBreaker::MAX);
        let get = |key: &str, v: Option<i64>, default: u32| match v {
            None => Ok(default),
            Some(v) => self.count(&path.key(key), v, 1, max),
        };
        Ok(CircuitBreaker {
            max_connections: get("max_connections", raw.max_connections, d.max_connections)?,
            max_pending_requests: match raw.max_pending_requests {
                None => d.max_pending_requests,
                // 0: never wait for a connection.
                Some(v) => self.count(&path.key("max_pending_requests"), v, 0, max)?,
            },
            max_requests: get("max_requests", raw.max_requests, d.max_requests)?,
        })
    }

    fn outlier(&self, path: &FieldPath, raw: RawOutlierDetection) -> Result<OutlierDetection> {
        let d = OutlierDetection::default();
        let base_ejection_time = match raw.base_ejection_time {
            None => d.base_ejection_time,
            Some(t) => self.duration(&path.key("base_ejection_time"), &t)?,
        };
        let max_ejection_time = match raw.max_ejection_time {
            None => d.max_ejection_time.max(base_ejection_time),
            Some(t) => self.duration(&path.key("max_ejection_time"), &t)?,
        };
        if max_ejection_time < base_ejection_time {
            return Err(self.error(
                &path.key("max_ejection_time"),
                "must be at least `base_ejection_time`",
            ));
        }
        Ok(OutlierDetection {
            consecutive_failures: match raw.consecutive_failures {
                None => d.consecutive_failures,
                Some(n) => self.count(&path.key("consecutive_failures"), n, 1, 1000)?,
            },
            base_ejection_time,
            max_ejection_time,
            max_ejection_percent: match raw.max_ejection_percent {
                None => d.max_ejection_percent,
                Some(n) => {
                    u8::try_from(self.count(&path.key("max_ejection_percent"), n, 0, 100)?)
                        .unwrap_or(100)
                }
            },
        })
    }

    fn health_check(&self, path: &FieldPath, raw: RawHealthCheck) -> Result<HealthCheck> {
        if !raw.path.starts_with('/') || raw.path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(self.error(
                &path.key("path"),
                format!(
                    "{:?} is not a request path (it must start with /)",
                    raw.path
                ),
            ));
        }
        let interval = match raw.interval {
            None => Duration::from_secs(5),
            Some(t) => self.duration(&path.key("interval"), &t)?,
        };
        let timeout = match raw.timeout {
            None => Duration::from_secs(1).min(interval),
            Some(t) => self.duration(&path.key("timeout"), &t)?,
        };
        if interval < Duration::from_millis(10) {
            return Err(self.error(&path.key("interval"), "must be at least 10ms"));
        }
        Ok(HealthCheck {
            path: raw.path,
            interval,
            timeout,
            unhealthy_threshold: match raw.unhealthy_threshold {
                None => 3,
                Some(n) => self.count(&path.key("unhealthy_threshold"), n, 1, 100)?,
            },
            healthy_threshold: match raw.healthy_threshold {
                None => 2,
                Some(n) => self.count(&path.key("healthy_threshold"), n, 1, 100)?,
            },
        })
    }

    fn subsets(
        &self,
        path: &FieldPath,
        subsets: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        for (name, labels) in &subsets {
            if !is_subset_name(name) {
                return Err(self.error(
                    &path.key(name),
                    format!("{name:?} is not a subset name: use lowercase letters, digits and '-' (at most 63)"),
                ));
            }
            if labels.is_empty() {
                return Err(self.error(
                    &path.key(name),
                    "a subset needs at least one label (`version: v2`)",
                ));
            }
        }
        Ok(subsets)
    }
}

/// A DNS label: how subsets are named (`reviews@v2`).
pub fn is_subset_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

/// A gRPC status code by its name (`unavailable`, `UNAVAILABLE`, `resource-exhausted`).
pub fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
    if let Ok(n) = name.parse::<u32>() {
        return (n <= 16).then_some(n);
    }
    let normalized = name.to_ascii_lowercase().replace('-', "_");
    let normalized = if normalized == "canceled" {
        "cancelled".to_owned()
    } else {
        normalized
    };
    NAMES
        .iter()
        .position(|n| *n == normalized)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Policy> {
        let doc = Document::new(yaml, Path::new("policy.yaml"));
        let raw: RawPolicy = doc.parse()?;
        check(&doc, &FieldPath::root(), raw)
    }

    #[test]
    fn reads_a_whole_policy() {
        let policy = parse(
            "load_balancer: {consistent_hash: {header: x-user}}\n\
             timeout: 2s\n\
             retries: {attempts: 3, per_try_timeout: 100ms, on: [connect-failure, 503, \"429\"], grpc_on: [unavailable, 8]}\n\
             circuit_breaker: {max_requests: 10, max_pending_requests: 0}\n\
             outlier_detection: {consecutive_failures: 2, base_ejection_time: 1s}\n\
             health_check: {path: /healthz, interval: 1s}\n\
             subsets: {v1: {version: v1}}\n",
        )
        .expect("valid");
        assert_eq!(
            policy.load_balancer,
            LoadBalancer::ConsistentHash(HashOn::Header(http::HeaderName::from_static("x-user")))
        );
        let retries = policy.retries.expect("retries");
        assert_eq!(retries.attempts, 3);
        assert!(retries.on.connect_failure && !retries.on.reset);
        assert!(retries.on.status(503) && retries.on.status(429) && !retries.on.status(502));
        assert!(
            retries.on.grpc_status(14) && retries.on.grpc_status(8) && !retries.on.grpc_status(2)
        );
        assert_eq!(policy.circuit_breaker.max_requests, 10);
        assert_eq!(policy.circuit_breaker.max_pending_requests, 0);
        assert_eq!(policy.circuit_breaker.max_connections, 1024);
        assert_eq!(
            policy.outlier_detection.expect("od").max_ejection_time,
            Duration::from_secs(300)
        );
        assert_eq!(policy.subsets["v1"]["version"], "v1");
    }

    #[test]
    fn the_wire_form_reads_back_the_same() {
        let yaml = "loadBalancer: least_request\nretries: {attempts: 1, budget: {ratio: 0.5}}\n";
        let doc = Document::new(yaml, Path::new("svc.yaml"));
        let raw: RawPolicy = doc.parse().expect("parses");
        let checked = check(&doc, &FieldPath::root(), raw.clone()).expect("valid");
        let back = from_json(&raw.to_json(), Path::new("wire")).expect("valid json");
        assert_eq!(checked, back);
        assert_eq!(
            from_json("", Path::new("wire")).expect("empty"),
            Policy::default()
        );
    }

    #[test]
    fn refuses_what_cannot_work_with_file_line_and_field() {
        for (yaml, expected) in [
            ("retries: {attempts: 11}\n", "retries.attempts"),
            ("retries: {attempts: -1}\n", "unbounded"),
            (
                "retries: {budget: {ratio: 0, min_per_second: 0}}\n",
                "lets no retry through",
            ),
            ("retries: {on: [teapot]}\n", "retries.on[0]"),
            ("retries: {on: [200]}\n", "cannot be retried"),
            ("retries: {grpc_on: [bogus]}\n", "unknown gRPC status"),
            ("retries: {max_replay_body: 1GiB}\n", "at most 16MiB"),
            ("load_balancer: fastest\n", "unknown load balancer"),
            ("load_balancer: {consistent_hash: {}}\n", "exactly one"),
            (
                "circuit_breaker: {max_requests: 0}\n",
                "circuit_breaker.max_requests",
            ),
            (
                "outlier_detection: {base_ejection_time: 10s, max_ejection_time: 1s}\n",
                "at least",
            ),
            ("health_check: {path: healthz}\n", "request path"),
            ("subsets: {V1: {version: v1}}\n", "subset name"),
            ("subsets: {v1: {}}\n", "at least one label"),
            ("timeout: 0s\n", "more than 0"),
            ("timeout: 2d\n", "at most 1d"),
            ("retry: {}\n", "unknown field"),
        ] {
            let error = parse(yaml).expect_err(yaml).to_string();
            assert!(error.contains(expected), "{yaml}: {error}");
            assert!(error.starts_with("policy.yaml:1:"), "{yaml}: {error}");
        }
    }

    #[test]
    fn names_grpc_codes() {
        assert_eq!(grpc_code("UNAVAILABLE"), Some(14));
        assert_eq!(grpc_code("resource-exhausted"), Some(8));
        assert_eq!(grpc_code("canceled"), Some(1));
        assert_eq!(grpc_code("17"), None);
    }
}
