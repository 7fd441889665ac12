//! Prometheus metrics: the proxy's own (requests, connections, configuration updates) and,
//! in the same registry, the runtime's filter metrics ([`weft_runtime::metrics`]).
//!
//! Everything is registered in one [`Registry`] served on the admin endpoint. Hot-path updates
//! never touch the registry's lock: handles are resolved once (per route and status) and
//! updated through prometheus-client's atomics afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use weft_runtime::metrics::{FilterMetrics, LatencyHistogram};

/// Labels of the request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    route: String,
    upstream: String,
    status: u16,
}

/// All metrics of one proxy process.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, LatencyHistogram>,
    filters: Arc<FilterMetrics>,
    config_updates: Family<ConfigUpdateLabels, Counter>,
    control_plane_connected: Gauge,
    snapshot_version: Gauge,
    connections_active: Family<ListenerLabels, Gauge>,
    connections_closed: Family<ConnectionClosedLabels, Counter>,
    tls_handshakes: Family<HandshakeLabels, Counter>,
    identity_renewals: Family<ResultLabels, Counter>,
    identity_expiry: CertificateExpiry,
    upstream_retries: Family<UpstreamReasonLabels, Counter>,
    upstream_retries_skipped: Family<UpstreamReasonLabels, Counter>,
    upstream_overflow: Family<UpstreamLimitLabels, Counter>,
    upstream_ejections: Family<UpstreamLabels, Counter>,
    discovery_services: Gauge,
    discovery_version: Gauge,
}

/// Labels of per-upstream counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// Labels of `weft_upstream_retries_total` and `weft_upstream_retries_skipped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamReasonLabels {
    upstream: String,
    reason: &'static str,
}

/// Labels of `weft_upstream_overflow_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLimitLabels {
    upstream: String,
    limit: &'static str,
}

/// Why a request was retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryReason {
    ConnectFailure,
    Reset,
    Timeout,
    Status,
    Grpc,
}

impl RetryReason {
    const ALL: [RetryReason; 5] = [
        RetryReason::ConnectFailure,
        RetryReason::Reset,
        RetryReason::Timeout,
        RetryReason::Status,
        RetryReason::Grpc,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RetryReason::ConnectFailure => "connect_failure",
            RetryReason::Reset => "reset",
            RetryReason::Timeout => "timeout",
            RetryReason::Status => "status",
            RetryReason::Grpc => "grpc",
        }
    }
}

/// Why a retryable failure was not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetrySkipped {
    /// The retry budget was spent.
    Budget,
    /// The request body could not be replayed (over `max_replay_body`).
    Body,
}

/// One upstream's counters, resolved once so the request path never takes the registry's
/// lock.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamMetrics {
    retries: [Counter; 5],
    skipped: [Counter; 2],
    overflow: [Counter; 3],
    ejections: Counter,
}

impl UpstreamMetrics {
    pub(crate) fn retried(&self, reason: RetryReason) {
        self.retries[reason as usize].inc();
    }

    pub(crate) fn skipped(&self, why: RetrySkipped) {
        self.skipped[why as usize].inc();
    }

    pub(crate) fn overflow(&self, kind: crate::upstream::Overflow) {
        self.overflow[kind as usize].inc();
    }

    pub(crate) fn ejected(&self) {
        self.ejections.inc();
    }
}

/// Labels of `weft_tls_handshakes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    side: &'static str,
    result: &'static str,
}

/// Labels of counters by result only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Seconds until the workload certificate expires, computed when scraped (so it counts down
/// between renewals); absent from the output until a certificate is installed.
#[derive(Debug, Clone, Default)]
struct CertificateExpiry(Arc<AtomicU64>);

impl TypedMetric for CertificateExpiry {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for CertificateExpiry {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let not_after = self.0.load(Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // 0 (never set) encodes as "expired long ago": a dashboard sees no certificate.
        encoder.encode_gauge(&(not_after as f64 - now))
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Labels of per-listener metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// Labels of `weft_downstream_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionClosedLabels {
    listener: String,
    reason: &'static str,
}

/// The connection metrics of one listener.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMetrics {
    active: Gauge,
    /// By [`CloseReason`](crate::dataplane::CloseReason), in its declaration order.
    closed: Vec<Counter>,
}

impl ConnectionMetrics {
    pub(crate) fn opened(&self) {
        self.active.inc();
    }

    pub(crate) fn ended(&self) {
        self.active.dec();
    }

    /// Count a connection the proxy closed itself; `reason` indexes the reasons the handles
    /// were made for.
    pub(crate) fn closed_as(&self, reason: usize) {
        if let Some(counter) = self.closed.get(reason) {
            counter.inc();
        }
    }
}

/// Labels of `weft_config_updates_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigUpdateLabels {
    source: &'static str,
    result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics with its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, LatencyHistogram>::default();
        registry.register(
            "requests",
            "Requests completed, by listener, route, upstream and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head received to response head sent",
            durations.clone(),
        );
        let config_updates = Family::<ConfigUpdateLabels, Counter>::default();
        registry.register(
            "config_updates",
            "Filter chain updates by source (file, control_plane) and result (applied, rejected)",
            config_updates.clone(),
        );
        let control_plane_connected = Gauge::default();
        registry.register(
            "control_plane_connected",
            "1 while the subscription to the control plane is up",
            control_plane_connected.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "control_plane_snapshot_version",
            "The control plane snapshot version being served (0: none)",
            snapshot_version.clone(),
        );
        let connections_active = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "downstream_connections_active",
            "Client connections open, by listener",
            connections_active.clone(),
        );
        let connections_closed = Family::<ConnectionClosedLabels, Counter>::default();
        registry.register(
            "downstream_connections_closed",
            "Client connections the proxy closed itself, by listener and reason (overflow: over max_connections; head_timeout; idle_timeout; premature_resets: HTTP/2 streams reset before their response)",
            connections_closed.clone(),
        );
        let tls_handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "mTLS handshakes between sidecars, by side (inbound: this proxy accepted; outbound: it connected to an upstream) and result (ok, plaintext: not TLS on a strict listener, untrusted, expired, bad_identity, no_certificate, timeout, error)",
            tls_handshakes.clone(),
        );
        let identity_renewals = Family::<ResultLabels, Counter>::default();
        registry.register(
            "identity_renewals",
            "Workload certificate requests to the control plane, by result (ok, error)",
            identity_renewals.clone(),
        );
        let identity_expiry = CertificateExpiry::default();
        registry.register(
            "identity_certificate_expiry_seconds",
            "Seconds until the workload certificate in use expires (negative: none, or expired)",
            identity_expiry.clone(),
        );
        let upstream_retries = Family::<UpstreamReasonLabels, Counter>::default();
        registry.register(
            "upstream_retries",
            "Retries sent, by upstream and reason (connect_failure, reset, timeout, status, grpc)",
            upstream_retries.clone(),
        );
        let upstream_retries_skipped = Family::<UpstreamReasonLabels, Counter>::default();
        registry.register(
            "upstream_retries_skipped",
            "Retryable failures not retried, by upstream and reason (budget: the retry budget was spent; body: the request body was over max_replay_body)",
            upstream_retries_skipped.clone(),
        );
        let upstream_overflow = Family::<UpstreamLimitLabels, Counter>::default();
        registry.register(
            "upstream_overflow",
            "Requests refused with 503 by an upstream's circuit breaker, by upstream and limit (max_connections, max_pending_requests, max_requests)",
            upstream_overflow.clone(),
        );
        let upstream_ejections = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_ejections",
            "Endpoints ejected by outlier detection, by upstream",
            upstream_ejections.clone(),
        );
        let discovery_services = Gauge::default();
        registry.register(
            "discovery_services",
            "Services known from the control plane",
            discovery_services.clone(),
        );
        let discovery_version = Gauge::default();
        registry.register(
            "discovery_version",
            "The discovery update version being served (0: none)",
            discovery_version.clone(),
        );
        let registry = Arc::new(Mutex::new(registry));
        let filters = Arc::new(FilterMetrics::register(&registry));
        Self {
            registry,
            requests,
            durations,
            filters,
            config_updates,
            control_plane_connected,
            snapshot_version,
            connections_active,
            connections_closed,
            tls_handshakes,
            identity_renewals,
            identity_expiry,
            upstream_retries,
            upstream_retries_skipped,
            upstream_overflow,
            upstream_ejections,
            discovery_services,
            discovery_version,
        }
    }

    /// The counters of upstream `name`.
    pub(crate) fn upstream(&self, name: &str) -> UpstreamMetrics {
        let reason = |family: &Family<UpstreamReasonLabels, Counter>, reason: &'static str| {
            family
                .get_or_create(&UpstreamReasonLabels {
                    upstream: name.to_owned(),
                    reason,
                })
                .clone()
        };
        let limit = |limit: &'static str| {
            self.upstream_overflow
                .get_or_create(&UpstreamLimitLabels {
                    upstream: name.to_owned(),
                    limit,
                })
                .clone()
        };
        UpstreamMetrics {
            retries: RetryReason::ALL.map(|r| reason(&self.upstream_retries, r.as_str())),
            skipped: [
                reason(&self.upstream_retries_skipped, "budget"),
                reason(&self.upstream_retries_skipped, "body"),
            ],
            overflow: [
                limit("max_connections"),
                limit("max_pending_requests"),
                limit("max_requests"),
            ],
            ejections: self
                .upstream_ejections
                .get_or_create(&UpstreamLabels {
                    upstream: name.to_owned(),
                })
                .clone(),
        }
    }

    /// Drops the `weft_upstream_*` series of upstream `name` (a discovered service's port
    /// that is gone), so that services coming and going do not grow `/metrics` forever.
    /// Handles still held by requests in flight count into nothing.
    pub(crate) fn forget_upstream(&self, name: &str) {
        let upstream = name.to_owned();
        for reason in RetryReason::ALL.map(RetryReason::as_str) {
            self.upstream_retries.remove(&UpstreamReasonLabels {
                upstream: upstream.clone(),
                reason,
            });
        }
        for reason in ["budget", "body"] {
            self.upstream_retries_skipped.remove(&UpstreamReasonLabels {
                upstream: upstream.clone(),
                reason,
            });
        }
        for limit in ["max_connections", "max_pending_requests", "max_requests"] {
            self.upstream_overflow.remove(&UpstreamLimitLabels {
                upstream: upstream.clone(),
                limit,
            });
        }
        self.upstream_ejections.remove(&UpstreamLabels { upstream });
    }

    pub(crate) fn set_discovery(&self, version: u64, services: usize) {
        self.discovery_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.discovery_services
            .set(i64::try_from(services).unwrap_or(i64::MAX));
    }

    /// The handshake counter for `side` (`inbound`, `outbound`) and `result`.
    pub(crate) fn tls_handshake(&self, side: &'static str, result: &'static str) -> Counter {
        self.tls_handshakes
            .get_or_create(&HandshakeLabels { side, result })
            .clone()
    }

    /// Count a certificate request; on success, `not_after` is the new certificate's expiry.
    pub(crate) fn identity_renewed(&self, not_after: Option<SystemTime>) {
        let result = if not_after.is_some() { "ok" } else { "error" };
        self.identity_renewals
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(at) = not_after {
            let secs = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.identity_expiry.0.store(secs, Ordering::Relaxed);
        }
    }

    /// The runtime's filter metrics, in this registry.
    pub fn filters(&self) -> &Arc<FilterMetrics> {
        &self.filters
    }

    /// Handles for the connection metrics of one listener; `reasons` are the labels of the
    /// reasons a connection can be closed, in the order [`ConnectionMetrics::closed_as`] uses.
    pub(crate) fn connections(
        &self,
        listener: &str,
        reasons: &[&'static str],
    ) -> ConnectionMetrics {
        ConnectionMetrics {
            active: self
                .connections_active
                .get_or_create(&ListenerLabels {
                    listener: listener.to_owned(),
                })
                .clone(),
            closed: reasons
                .iter()
                .map(|reason| {
                    self.connections_closed
                        .get_or_create(&ConnectionClosedLabels {
                            listener: listener.to_owned(),
                            reason,
                        })
                        .clone()
                })
                .collect(),
        }
    }

    /// Count one chain update from `source` (`file`, `control_plane`) with `result`
    /// (`applied`, `rejected`).
    pub(crate) fn config_update(&self, source: &'static str, result: &'static str) {
        self.config_updates
            .get_or_create(&ConfigUpdateLabels { source, result })
            .inc();
    }

    /// Record whether the control plane subscription is up.
    pub(crate) fn set_control_plane_connected(&self, up: bool) {
        self.control_plane_connected.set(i64::from(up));
    }

    /// Record the control plane snapshot version being served.
    pub(crate) fn set_snapshot_version(&self, version: u64) {
        self.snapshot_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// Handles for the request metrics of one route (or of requests that matched none).
    pub(crate) fn route(&self, listener: &str, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            requests: self.requests.clone(),
            durations: self.durations.clone(),
            listener: listener.to_owned(),
            route: route.to_owned(),
            upstream: upstream.to_owned(),
            by_status: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Request metric handles of one route, cached per status so a request costs no allocation.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, LatencyHistogram>,
    listener: String,
    route: String,
    upstream: String,
    by_status: Arc<RwLock<Vec<(u16, Counter, LatencyHistogram)>>>,
}

impl RouteMetrics {
    /// Count one completed request.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        {
            let cached = self
                .by_status
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, count, hist)) = cached.iter().find(|(s, _, _)| *s == status) {
                count.inc();
                hist.observe(elapsed);
                return;
            }
        }
        let labels = RequestLabels {
            listener: self.listener.clone(),
            route: self.route.clone(),
            upstream: self.upstream.clone(),
            status,
        };
        let count = self.requests.get_or_create(&labels).clone();
        let hist = self.durations.get_or_create(&labels).clone();
        count.inc();
        hist.observe(elapsed);
        let mut cached = self
            .by_status
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !cached.iter().any(|(s, _, _)| *s == status) {
            cached.push((status, count, hist));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_metrics_count_by_status() {
        let metrics = Metrics::new();
        let route = metrics.route("inbound", "api", "app");
        route.record(200, Duration::from_millis(1));
        route.record(200, Duration::from_millis(2));
        route.record(503, Duration::from_millis(2));
        let text = metrics.encode();
        assert!(text.contains(
            r#"weft_requests_total{listener="inbound",route="api",upstream="app",status="200"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"weft_requests_total{listener="inbound",route="api",upstream="app",status="503"} 1"#
        ), "{text}");
    }
}
