//! The filter metrics: what the runtime records about each filter (call durations, failures,
//! breaker state), and the metrics filters define themselves through `weft:filter/metrics`.
//!
//! They are registered in a [`Registry`] the embedder shares (the proxy serves it on its admin
//! endpoint, next to its own metrics). Hot-path updates never touch the registry's lock:
//! handles are resolved once per filter and hook and updated through atomics afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::host::store::{StoreLimits, Stores};
use crate::host::token_bucket::{BucketLabels, TokenBuckets};

/// Upper bound of the first latency bucket; bucket `k` ends at `10 µs · 2^k`.
const LATENCY_BASE_NANOS: u64 = 10_000;
/// Finite latency buckets: 10 µs up to ~42 s; one more counts everything above.
const LATENCY_BUCKETS: usize = 23;

/// A latency histogram that costs two relaxed atomic adds per observation.
///
/// prometheus-client's `Histogram` takes a lock and scans its buckets on every observation;
/// on the hook-call path that was ~15% of a warm call (see `benches/hook_call.rs`). Fixed
/// exponential buckets let the bucket be found with one bit scan instead.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<LatencyCounts>);

#[derive(Debug, Default)]
struct LatencyCounts {
    buckets: [AtomicU64; LATENCY_BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Record one duration.
    #[inline] // On every request and hook call, called from the proxy's crate too.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.buckets[latency_bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The smallest `k` with `nanos <= 10 µs · 2^k`, or the overflow bucket.
fn latency_bucket(nanos: u64) -> usize {
    let units = nanos.div_ceil(LATENCY_BASE_NANOS);
    if units <= 1 {
        return 0;
    }
    let k = 64 - (units - 1).leading_zeros() as usize;
    k.min(LATENCY_BUCKETS)
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0); LATENCY_BUCKETS + 1];
        let mut count = 0;
        for (k, (bound, n)) in buckets.iter_mut().enumerate() {
            *bound = if k == LATENCY_BUCKETS {
                f64::MAX
            } else {
                (LATENCY_BASE_NANOS << k) as f64 / 1e9
            };
            *n = self.0.buckets[k].load(Ordering::Relaxed);
            count += *n;
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Labels of per-filter metrics kept by the proxy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterHookLabels {
    filter: String,
    hook: &'static str,
}

/// Labels of filter failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterErrorLabels {
    filter: String,
    kind: &'static str,
}

/// Labels of a filter-defined metric: `filter` first, then the filter's own.
pub(crate) type DynLabels = Vec<(String, String)>;

/// The runtime's metrics, registered in a registry shared with the embedder.
#[derive(Debug)]
pub struct FilterMetrics {
    registry: Arc<Mutex<Registry>>,
    hook_durations: Family<FilterHookLabels, LatencyHistogram>,
    filter_errors: Family<FilterErrorLabels, Counter>,
    filters: Arc<FilterMetricRegistry>,
    buckets: Arc<TokenBuckets>,
    filter_short_circuits: Family<FilterShortCircuitLabels, Counter>,
    filter_breaker_open: Family<FilterLabels, Gauge>,
    filter_delays_overflow: Family<FilterLabels, Counter>,
    filter_calls: Family<FilterCallLabels, Counter>,
    stores: Arc<Stores>,
}

/// Labels of `weft_filter_outbound_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterCallLabels {
    filter: String,
    result: &'static str,
}

/// Labels of per-filter metrics without more detail.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterLabels {
    filter: String,
}

/// Labels of `weft_filter_short_circuits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterShortCircuitLabels {
    filter: String,
    reason: &'static str,
}

/// The runtime's metrics about one loaded filter's health: calls it did not get, breaker
/// state, delays over the cap.
#[derive(Debug, Clone)]
pub(crate) struct FilterHealthMetrics {
    /// Calls answered by the failure policy without calling the filter: [breaker open,
    /// too many concurrent calls].
    pub(crate) short_circuits: [Counter; 2],
    /// 1 while the breaker is open.
    pub(crate) breaker_open: Gauge,
    /// Delays not held because the filter already held its maximum.
    pub(crate) delays_overflow: Counter,
}

impl Default for FilterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl FilterMetrics {
    /// The filter metrics in a registry of their own (prefix `weft`): for a runtime whose
    /// metrics nobody else serves, such as the test harness or a control plane's sandbox.
    pub fn new() -> Self {
        Self::register(&Arc::new(Mutex::new(Registry::with_prefix("weft"))))
    }

    /// Create the filter metrics in `registry`.
    pub fn register(registry: &Arc<Mutex<Registry>>) -> Self {
        let hook_durations = Family::<FilterHookLabels, LatencyHistogram>::default();
        let filter_errors = Family::<FilterErrorLabels, Counter>::default();
        let bucket_keys = Family::<BucketLabels, Gauge>::default();
        let filter_short_circuits = Family::<FilterShortCircuitLabels, Counter>::default();
        let filter_breaker_open = Family::<FilterLabels, Gauge>::default();
        let filter_delays_overflow = Family::<FilterLabels, Counter>::default();
        let metric_overflow = Family::<FilterMetricLabels, Counter>::default();
        let filter_calls = Family::<FilterCallLabels, Counter>::default();
        let stores = Arc::new(Stores::new(StoreLimits::default()));
        {
            let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
            registry.register(
                "filter_call_duration_seconds",
                "Time spent in one filter hook call, by filter and hook",
                hook_durations.clone(),
            );
            registry.register(
                "filter_errors",
                "Filter failures by filter and kind (trap, timeout, invalid_action, instantiate, metric)",
                filter_errors.clone(),
            );
            registry.register(
                "token_bucket_keys",
                "Token buckets (distinct keys) held by each filter's bucket family",
                bucket_keys.clone(),
            );
            registry.register(
                "filter_short_circuits",
                "Hook calls a filter did not get; its failure policy answered instead (reason: breaker_open after repeated time-budget overruns, overloaded: too many concurrent calls)",
                filter_short_circuits.clone(),
            );
            registry.register(
                "filter_breaker_open",
                "1 while a filter's breaker is open (it keeps overrunning its time budget)",
                filter_breaker_open.clone(),
            );
            registry.register(
                "filter_delays_overflow",
                "Delays a filter asked for that were not held because it already held max_active_delays requests",
                filter_delays_overflow.clone(),
            );
            registry.register(
                "filter_metric_series_overflow",
                "Updates of a filter-defined metric that went to its overflow series (label values `overflow`) because the metric holds its maximum of series",
                metric_overflow.clone(),
            );
            registry.register(
                "filter_outbound_calls",
                "Outbound calls filters made with the `call` action, by filter and result (ok, unknown_upstream, invalid_request, timeout, response_too_large, too_many_calls, unavailable)",
                filter_calls.clone(),
            );
            registry.register(
                "filter_store_keys",
                "Live and not yet swept entries in each filter's shared store",
                stores.keys.clone(),
            );
            registry.register(
                "filter_store_bytes",
                "Bytes of keys and values in each filter's shared store",
                stores.bytes.clone(),
            );
            registry.register(
                "filter_store_refusals",
                "Writes to a filter's shared store that were refused, by reason (invalid_key, value_too_large, full, conflict)",
                stores.refusals.clone(),
            );
        }
        let filters = Arc::new(FilterMetricRegistry {
            entries: Mutex::new(HashMap::new()),
            errors: filter_errors.clone(),
            overflow: metric_overflow,
            registry: registry.clone(),
        });
        Self {
            registry: registry.clone(),
            hook_durations,
            filter_errors,
            filters,
            buckets: Arc::new(TokenBuckets::new(bucket_keys)),
            filter_short_circuits,
            filter_breaker_open,
            filter_delays_overflow,
            filter_calls,
            stores,
        }
    }

    /// The counter of `filter`'s outbound calls with `result`.
    pub(crate) fn filter_call(&self, filter: &str, result: &'static str) -> Counter {
        self.filter_calls
            .get_or_create(&FilterCallLabels {
                filter: filter.to_owned(),
                result,
            })
            .clone()
    }

    /// The filters' shared stores.
    pub(crate) fn stores(&self) -> Arc<Stores> {
        self.stores.clone()
    }

    /// Handles for the health metrics of one filter.
    pub(crate) fn filter_health(&self, filter: &str) -> FilterHealthMetrics {
        let short = |reason| {
            self.filter_short_circuits
                .get_or_create(&FilterShortCircuitLabels {
                    filter: filter.to_owned(),
                    reason,
                })
                .clone()
        };
        let labels = FilterLabels {
            filter: filter.to_owned(),
        };
        FilterHealthMetrics {
            short_circuits: [short("breaker_open"), short("overloaded")],
            breaker_open: self.filter_breaker_open.get_or_create(&labels).clone(),
            delays_overflow: self.filter_delays_overflow.get_or_create(&labels).clone(),
        }
    }

    /// The process's token-bucket families.
    pub(crate) fn token_buckets(&self) -> Arc<TokenBuckets> {
        self.buckets.clone()
    }

    /// The registry of filter-defined metrics.
    pub(crate) fn filter_registry(&self) -> Arc<FilterMetricRegistry> {
        self.filters.clone()
    }

    /// The call-duration histogram of one filter hook.
    pub(crate) fn hook(&self, filter: &str, hook: &'static str) -> LatencyHistogram {
        self.hook_durations
            .get_or_create(&FilterHookLabels {
                filter: filter.to_owned(),
                hook,
            })
            .clone()
    }

    /// The failure counter of one filter and failure kind.
    pub(crate) fn filter_error(&self, filter: &str, kind: &'static str) -> Counter {
        self.filter_errors
            .get_or_create(&FilterErrorLabels {
                filter: filter.to_owned(),
                kind,
            })
            .clone()
    }

    /// The Prometheus text exposition of the registry these metrics are in.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// What kind of metric a filter defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Builds histograms with a filter's bucket bounds.
#[derive(Debug, Clone)]
pub(crate) struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The series family behind a filter-defined metric.
#[derive(Debug)]
pub(crate) enum FamilyOf {
    Counter(Family<DynLabels, Counter>),
    Gauge(Family<DynLabels, Gauge>),
    Histogram(Family<DynLabels, Histogram, Buckets>),
}

/// The most series one filter-defined metric holds; updates that would create more go to
/// one overflow series whose label values are all `overflow` (and are counted), so a filter
/// labelling with request data cannot grow `/metrics` without bound.
pub const MAX_SERIES_PER_FILTER_METRIC: usize = 1000;

/// The most metrics filters may define in one proxy.
pub const MAX_FILTER_METRICS: usize = 1000;

/// The longest label value kept; longer ones are cut (at a character boundary).
pub const MAX_FILTER_LABEL_VALUE_BYTES: usize = 256;

impl FamilyOf {
    /// Whether the series with these labels exists.
    pub(crate) fn contains(&self, labels: &DynLabels) -> bool {
        match self {
            FamilyOf::Counter(f) => f.get(labels).is_some(),
            FamilyOf::Gauge(f) => f.get(labels).is_some(),
            FamilyOf::Histogram(f) => f.get(labels).is_some(),
        }
    }
}

/// One metric defined by a filter, shared by every filter and instance that defines it
/// identically.
#[derive(Debug)]
pub(crate) struct MetricEntry {
    pub(crate) name: String,
    pub(crate) label_names: Vec<String>,
    buckets: Option<Arc<[f64]>>,
    pub(crate) family: FamilyOf,
    /// Series created so far (at most [`MAX_SERIES_PER_FILTER_METRIC`], plus the overflow).
    pub(crate) series: AtomicU64,
}

impl MetricEntry {
    /// What kind of metric this is.
    pub(crate) fn kind(&self) -> MetricKind {
        match self.family {
            FamilyOf::Counter(_) => MetricKind::Counter,
            FamilyOf::Gauge(_) => MetricKind::Gauge,
            FamilyOf::Histogram(_) => MetricKind::Histogram,
        }
    }
}

/// Why a filter's metric definition was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DefineFailure {
    InvalidName(String),
    Conflict(String),
    InvalidBuckets,
}

/// The metrics filters have defined, by name.
#[derive(Debug)]
pub(crate) struct FilterMetricRegistry {
    entries: Mutex<HashMap<String, Arc<MetricEntry>>>,
    errors: Family<FilterErrorLabels, Counter>,
    overflow: Family<FilterMetricLabels, Counter>,
    registry: Arc<Mutex<Registry>>,
}

/// Labels of `weft_filter_metric_series_overflow_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterMetricLabels {
    filter: String,
    metric: String,
}

/// Whether `name` matches `[a-z_][a-z0-9_]*`: the names filters give metrics, labels and
/// token-bucket families.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_metric_name(name: &str) -> bool {
    is_identifier(name) && name.len() <= 128
}

impl FilterMetricRegistry {
    /// Define a metric, or return the existing one when it was defined identically.
    pub(crate) fn define(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        labels: Vec<String>,
        buckets: Option<Vec<f64>>,
    ) -> Result<Arc<MetricEntry>, DefineFailure> {
        if !valid_metric_name(name) {
            return Err(DefineFailure::InvalidName(format!(
                "metric name {name:?} must match [a-z_][a-z0-9_]*"
            )));
        }
        for label in &labels {
            if !valid_metric_name(label) || label == "filter" {
                return Err(DefineFailure::InvalidName(format!(
                    "label name {label:?} must match [a-z_][a-z0-9_]* and not be `filter`"
                )));
            }
        }
        let buckets: Option<Arc<[f64]>> = match buckets {
            Some(b) => {
                let ok = !b.is_empty()
                    && b.iter().all(|v| v.is_finite())
                    && b.windows(2).all(|w| w[0] < w[1]);
                if !ok {
                    return Err(DefineFailure::InvalidBuckets);
                }
                Some(b.into())
            }
            None => None,
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.contains_key(name) && entries.len() >= MAX_FILTER_METRICS {
            return Err(DefineFailure::InvalidName(format!(
                "cannot define metric {name:?}: filters have defined the maximum of {MAX_FILTER_METRICS} metrics"
            )));
        }
        if let Some(existing) = entries.get(name) {
            if existing.kind() == kind
                && existing.label_names == labels
                && existing.buckets == buckets
            {
                return Ok(existing.clone());
            }
            return Err(DefineFailure::Conflict(format!(
                "metric {name:?} is already defined as a {:?} with labels {:?}",
                existing.kind(),
                existing.label_names
            )));
        }
        let family = match (kind, &buckets) {
            (MetricKind::Counter, _) => FamilyOf::Counter(Family::default()),
            (MetricKind::Gauge, _) => FamilyOf::Gauge(Family::default()),
            (MetricKind::Histogram, Some(b)) => {
                FamilyOf::Histogram(Family::new_with_constructor(Buckets(b.clone())))
            }
            (MetricKind::Histogram, None) => return Err(DefineFailure::InvalidBuckets),
        };
        let full_name = format!("filter_{name}");
        {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            match &family {
                FamilyOf::Counter(f) => registry.register(full_name, help, f.clone()),
                FamilyOf::Gauge(f) => registry.register(full_name, help, f.clone()),
                FamilyOf::Histogram(f) => registry.register(full_name, help, f.clone()),
            }
        }
        let entry = Arc::new(MetricEntry {
            name: name.to_owned(),
            label_names: labels,
            buckets,
            family,
            series: AtomicU64::new(0),
        });
        entries.insert(name.to_owned(), entry.clone());
        Ok(entry)
    }

    /// Count an update of `filter` that went to `metric`'s overflow series.
    pub(crate) fn count_overflow(&self, filter: &str, metric: &str) {
        self.overflow
            .get_or_create(&FilterMetricLabels {
                filter: filter.to_owned(),
                metric: metric.to_owned(),
            })
            .inc();
    }

    /// Count a dropped metric update of `filter`.
    pub(crate) fn count_error(&self, filter: &str) {
        self.errors
            .get_or_create(&FilterErrorLabels {
                filter: filter.to_owned(),
                kind: "metric",
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_metric_definitions_are_shared_and_checked() {
        let metrics = FilterMetrics::new();
        let reg = metrics.filter_registry();
        let a = reg
            .define(
                MetricKind::Counter,
                "hits",
                "h",
                vec!["method".into()],
                None,
            )
            .expect("first definition");
        let b = reg
            .define(
                MetricKind::Counter,
                "hits",
                "h",
                vec!["method".into()],
                None,
            )
            .expect("identical redefinition");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(matches!(
            reg.define(MetricKind::Gauge, "hits", "h", vec![], None),
            Err(DefineFailure::Conflict(_))
        ));
        assert!(matches!(
            reg.define(MetricKind::Counter, "Bad-Name", "h", vec![], None),
            Err(DefineFailure::InvalidName(_))
        ));
        assert!(matches!(
            reg.define(MetricKind::Counter, "x", "h", vec!["filter".into()], None),
            Err(DefineFailure::InvalidName(_))
        ));
        assert_eq!(
            reg.define(
                MetricKind::Histogram,
                "h",
                "h",
                vec![],
                Some(vec![2.0, 1.0])
            )
            .err(),
            Some(DefineFailure::InvalidBuckets)
        );
        if let FamilyOf::Counter(f) = &a.family {
            f.get_or_create(&vec![
                ("filter".to_owned(), "demo".to_owned()),
                ("method".to_owned(), "GET".to_owned()),
            ])
            .inc();
        }
        let text = metrics.encode();
        assert!(
            text.contains(r#"weft_filter_hits_total{filter="demo",method="GET"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn latency_buckets_are_exponential_from_ten_microseconds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(10_000), 0);
        assert_eq!(latency_bucket(10_001), 1);
        assert_eq!(latency_bucket(20_000), 1);
        assert_eq!(latency_bucket(20_001), 2);
        assert_eq!(latency_bucket(40_000), 2);
        assert_eq!(latency_bucket(80_001), 4);
        assert_eq!(latency_bucket(10_000 << 22), 22);
        assert_eq!(latency_bucket((10_000 << 22) + 1), LATENCY_BUCKETS);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS);
    }

    #[test]
    fn latency_histogram_encodes_cumulative_buckets() {
        let metrics = FilterMetrics::new();
        let h = metrics.hook("f", "on-request-headers");
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(15));
        h.observe(Duration::from_secs(100));
        let text = metrics.encode();
        let bucket = |le: &str, n: u64| {
            format!(
                r#"weft_filter_call_duration_seconds_bucket{{le="{le}",filter="f",hook="on-request-headers"}} {n}"#
            )
        };
        assert!(text.contains(&bucket("0.00001", 1)), "{text}");
        assert!(text.contains(&bucket("0.00002", 2)), "{text}");
        assert!(text.contains(&bucket("+Inf", 3)), "{text}");
        assert!(
            text.contains(
                r#"weft_filter_call_duration_seconds_count{filter="f",hook="on-request-headers"} 3"#
            ),
            "{text}"
        );
    }
}
