//! What the control plane knows about each proxy, for the admin endpoint and for tests.

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::catalog::ProxyIdentity;

/// One proxy's stream, as last seen. Kept after the proxy disconnects so that status shows
/// it; a reconnect with the same namespace and name replaces it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    /// Who the proxy said it is in its hello.
    pub identity: ProxyIdentity,
    /// The workload identity (SPIFFE ID) of the proxy's client certificate, when it carries
    /// one: who the proxy proved it is, rather than what it said.
    pub spiffe_id: Option<String>,
    /// Whether its stream is open. Only connected proxies count in a `WasmFilter`'s rollout.
    pub connected: bool,
    /// When the current (or last) stream opened; a reconnect starts a new entry.
    #[serde(serialize_with = "rfc3339")]
    pub connected_at: SystemTime,
    /// When the stream closed, if it has.
    #[serde(serialize_with = "rfc3339_opt")]
    pub disconnected_at: Option<SystemTime>,
    /// The version of the last snapshot sent; 0 for none yet.
    pub sent_version: u64,
    /// The snapshot version the proxy serves, from its hello or its last report.
    pub serving_version: u64,
    /// The proxy's answer to the last snapshot it answered.
    pub last_report: Option<ReportStatus>,
    /// The filters of the last snapshot sent, in chain order.
    pub filters: Vec<SentFilter>,
    /// Its `Watch` (service discovery) stream, if it opened one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryStatus>,
}

/// A proxy's `Watch` stream, as last seen.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryStatus {
    /// Who the proxy said it is in its `DiscoveryHello`.
    #[serde(skip)]
    pub identity: ProxyIdentity,
    /// The SPIFFE ID of its client certificate, if it carries one.
    #[serde(skip)]
    pub spiffe_id: Option<String>,
    /// Whether the stream is open.
    pub connected: bool,
    /// When the stream opened.
    #[serde(serialize_with = "rfc3339")]
    pub connected_at: SystemTime,
    /// The namespaces it asked for; empty for all.
    pub namespaces: Vec<String>,
    /// The version of the last update sent; 0 for none yet.
    pub sent_version: u64,
    /// How many services the proxy holds after the last update sent.
    pub services: usize,
    /// The last version it accepted (ACK); 0 for none.
    pub acked: u64,
    /// The last version it refused (NACK); 0 for none.
    pub nacked: u64,
    /// Why it refused `nacked`, per service (the first 32, each at most 1 KiB).
    pub errors: Vec<ServiceReportError>,
}

/// The most NACK reasons kept per proxy, and the longest kept message: what a proxy says is
/// shown, not stored without bound.
pub(crate) const MAX_REPORT_ERRORS: usize = 32;
/// See [`MAX_REPORT_ERRORS`].
pub(crate) const MAX_REPORT_MESSAGE: usize = 1024;

/// One reason a proxy gave for refusing a discovery update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceReportError {
    /// `namespace/name` of the service, or empty for the update as a whole.
    pub service: String,
    /// Why, in the proxy's words.
    pub message: String,
}

/// A proxy's answer to a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportStatus {
    /// The snapshot version answered.
    pub version: u64,
    /// ACK (true) or NACK (false).
    pub accepted: bool,
    /// Why not, per filter (`filter` empty for the snapshot as a whole).
    pub errors: Vec<ReportError>,
}

/// One reason a proxy gave for a NACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportError {
    /// `namespace/name` of the filter, or empty.
    pub filter: String,
    /// Why, in the proxy's words.
    pub message: String,
}

/// A filter as last sent to a proxy. A `WasmFilter`'s rollout counts the proxy as running the
/// generation in service only when all three fields match it (and the proxy acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentFilter {
    /// The filter's `namespace/name`.
    pub name: String,
    /// The module's sha256 digest, lowercase hex.
    pub sha256: String,
    /// The generation of the definition that was sent.
    pub generation: i64,
}

fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn rfc3339_opt<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, s),
        None => s.serialize_none(),
    }
}
