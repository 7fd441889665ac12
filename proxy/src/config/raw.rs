//! The config file as serde sees it. Values that need parsing (durations, sizes, addresses)
//! stay strings here so that `validate` can report them with the field path and position.
//! The `expecting` texts appear in "invalid type" messages, so they describe the YAML.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use weft_traffic::policy::{
    RawCircuitBreaker, RawHealthCheck, RawLoadBalancer, RawOutlierDetection, RawRetries,
};

use super::{Direction, EscapedSlashes, FailurePolicy, InboundTls, Isolation, UpstreamProtocol};

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with the keys `listeners` and `upstreams`"
)]
pub(super) struct RawConfig {
    pub(super) admin: Option<RawAdmin>,
    pub(super) cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(super) upstreams: Vec<RawUpstream>,
    pub(super) control_plane: Option<RawControlPlane>,
    pub(super) identity: Option<RawIdentity>,
    pub(super) discovery: Option<RawDiscovery>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `namespaces`, `cluster_domain` and/or `tls`"
)]
pub(super) struct RawDiscovery {
    pub(super) namespaces: Option<Vec<String>>,
    pub(super) cluster_domain: Option<String>,
    pub(super) tls: Option<RawUpstreamTls>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `token_file` and optionally `service_account`"
)]
pub(super) struct RawIdentity {
    pub(super) service_account: Option<String>,
    pub(super) token_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `mode` (strict, permissive or disabled)"
)]
pub(super) struct RawListenerTls {
    pub(super) mode: InboundTls,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `mode` (mesh or disabled) and optionally `identity`"
)]
pub(super) struct RawUpstreamTls {
    pub(super) mode: RawUpstreamTlsMode,
    pub(super) identity: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawUpstreamTlsMode {
    Mesh,
    Disabled,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key `address`")]
pub(super) struct RawControlPlane {
    pub(super) address: String,
    pub(super) name: Option<String>,
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) tls: Option<RawClientTls>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `ca`, and `cert` and `key` unless `identity` is set"
)]
pub(super) struct RawClientTls {
    pub(super) ca: PathBuf,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key `address`")]
pub(super) struct RawAdmin {
    pub(super) address: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of size limits")]
pub(super) struct RawLimits {
    pub(super) max_request_header_bytes: Option<RawSize>,
    pub(super) max_request_body_bytes: Option<RawSize>,
    pub(super) max_buffered_body_bytes: Option<RawSize>,
    pub(super) max_connections: Option<u64>,
    pub(super) request_head_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) http2_max_concurrent_streams: Option<u64>,
    pub(super) http2_keepalive_interval: Option<String>,
    pub(super) http2_keepalive_timeout: Option<String>,
    pub(super) http2_max_premature_resets: Option<u64>,
    pub(super) max_concurrent_calls_per_filter: Option<u64>,
    pub(super) max_active_delays_per_filter: Option<u64>,
    pub(super) max_outbound_calls_per_filter: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `normalize`, `merge_slashes` and/or `escaped_slashes`"
)]
pub(super) struct RawPaths {
    pub(super) normalize: Option<bool>,
    pub(super) merge_slashes: Option<bool>,
    pub(super) escaped_slashes: Option<EscapedSlashes>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a listener: a mapping with `name`, `address` and `routes`"
)]
pub(super) struct RawListener {
    pub(super) name: String,
    pub(super) address: String,
    #[serde(default)]
    pub(super) direction: Direction,
    #[serde(default)]
    pub(super) paths: RawPaths,
    pub(super) tls: Option<RawListenerTls>,
    pub(super) peer_identity_header: Option<String>,
    #[serde(default)]
    pub(super) filters: Vec<RawFilter>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a filter: a mapping with `name` and `module`"
)]
pub(super) struct RawFilter {
    pub(super) name: String,
    pub(super) module: PathBuf,
    pub(super) config: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) failure_policy: FailurePolicy,
    pub(super) time_budget: Option<String>,
    #[serde(default)]
    pub(super) isolation: Isolation,
    pub(super) max_memory: Option<RawSize>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a route: a mapping with `name` and `upstream`"
)]
pub(super) struct RawRoute {
    pub(super) name: String,
    #[serde(rename = "match", default)]
    pub(super) matcher: RawMatch,
    pub(super) upstream: Option<String>,
    pub(super) split: Option<Vec<RawSplit>>,
    pub(super) by_authority: Option<bool>,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<RawRetries>,
    #[serde(default)]
    pub(super) filters: BTreeMap<String, RawOverride>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a split: a mapping with `upstream`, `weight` and optionally `subset`"
)]
pub(super) struct RawSplit {
    pub(super) upstream: String,
    pub(super) subset: Option<String>,
    pub(super) weight: i64,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `path` and/or `headers`"
)]
pub(super) struct RawMatch {
    pub(super) path: Option<RawPathMatch>,
    #[serde(default)]
    pub(super) headers: Vec<RawHeaderMatch>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with one of `exact` or `prefix`"
)]
pub(super) struct RawPathMatch {
    pub(super) exact: Option<String>,
    pub(super) prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name` and one of `exact`, `prefix` or `present`"
)]
pub(super) struct RawHeaderMatch {
    pub(super) name: String,
    pub(super) exact: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) present: Option<bool>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `disabled: true` or `config`"
)]
pub(super) struct RawOverride {
    pub(super) disabled: Option<bool>,
    pub(super) config: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an upstream: a mapping with `name` and `endpoints`"
)]
pub(super) struct RawUpstream {
    pub(super) name: String,
    #[serde(default)]
    pub(super) endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    pub(super) protocol: UpstreamProtocol,
    pub(super) tls: Option<RawUpstreamTls>,
    // The traffic policy's keys, beside the upstream's own (see `weft_traffic::policy`).
    pub(super) connect_timeout: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) load_balancer: Option<RawLoadBalancer>,
    pub(super) retries: Option<RawRetries>,
    pub(super) circuit_breaker: Option<RawCircuitBreaker>,
    pub(super) outlier_detection: Option<RawOutlierDetection>,
    pub(super) health_check: Option<RawHealthCheck>,
    pub(super) subsets: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// `host:port`, or a mapping with `address`, `weight` and `labels`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an endpoint: \"host:port\", or a mapping with `address` and optionally `weight` and `labels`"
)]
pub(super) enum RawEndpoint {
    Address(String),
    Detailed(RawEndpointDetail),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpointDetail {
    pub(super) address: String,
    pub(super) weight: Option<i64>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

/// A size as written: `16MiB` or a plain number of bytes, kept as text until it is parsed.
pub(super) struct RawSize(pub(super) String);

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size, like 16MiB, or a number of bytes")
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawSize, E> {
                Ok(RawSize(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
