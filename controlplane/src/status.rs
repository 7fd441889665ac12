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
