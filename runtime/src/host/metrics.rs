//! `weft:filter/metrics`: metrics defined by filters.
//!
//! A handle is an index into the defining instance's own table, so updates cost no lock; the
//! series behind it are shared by every instance and version of filters that define the same
//! metric identically.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::HostState;
use crate::bindings::weft::filter::metrics::{DefineError, Host, Metric};
use crate::metrics::{
    DefineFailure, FamilyOf, FilterMetricRegistry, MAX_FILTER_LABEL_VALUE_BYTES,
    MAX_SERIES_PER_FILTER_METRIC, MetricEntry, MetricKind,
};

/// How many series one instance remembers; updates of others resolve the series each time.
const MAX_CACHED_SERIES: usize = 1024;

/// A label value cut to [`MAX_FILTER_LABEL_VALUE_BYTES`].
fn truncated(value: &str) -> String {
    if value.len() <= MAX_FILTER_LABEL_VALUE_BYTES {
        return value.to_owned();
    }
    let mut end = MAX_FILTER_LABEL_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// One resolved series of a filter metric (cheap clones of the family's shared atomics).
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Series {
    fn kind(&self) -> MetricKind {
        match self {
            Series::Counter(_) => MetricKind::Counter,
            Series::Gauge(_) => MetricKind::Gauge,
            Series::Histogram(_) => MetricKind::Histogram,
        }
    }
}

/// The metrics one instance has defined, indexed by the handles it was given.
pub(crate) struct InstanceMetrics {
    filter: Arc<str>,
    registry: Arc<FilterMetricRegistry>,
    handles: Vec<Arc<MetricEntry>>,
    /// Series this instance has updated, by handle and label values.
    series: HashMap<(Metric, Vec<String>), Series>,
}

impl InstanceMetrics {
    pub(crate) fn new(filter: Arc<str>, registry: Arc<FilterMetricRegistry>) -> Self {
        Self {
            filter,
            registry,
            handles: Vec::new(),
            series: HashMap::new(),
        }
    }

    fn define(
        &mut self,
        kind: MetricKind,
        name: &str,
        help: &str,
        labels: Vec<String>,
        buckets: Option<Vec<f64>>,
    ) -> Result<Metric, DefineError> {
        let entry = self
            .registry
            .define(kind, name, help, labels, buckets)
            .map_err(|e| match e {
                DefineFailure::InvalidName(m) => DefineError::InvalidName(m),
                DefineFailure::Conflict(m) => DefineError::Conflict(m),
                DefineFailure::InvalidBuckets => DefineError::InvalidBuckets,
            })?;
        if let Some(i) = self.handles.iter().position(|e| Arc::ptr_eq(e, &entry)) {
            return Ok(i as Metric);
        }
        self.handles.push(entry);
        Ok((self.handles.len() - 1) as Metric)
    }

    /// Apply `apply` to the series `label_values` selects, or drop (and count) a bad update:
    /// an unknown handle, another kind of metric, or the wrong number of label values.
    ///
    /// Series an instance has updated are remembered (up to [`MAX_CACHED_SERIES`]), so the
    /// steady state is one hash lookup and an atomic update: no label strings are built and the
    /// shared family's lock is not taken.
    fn update(
        &mut self,
        metric: Metric,
        label_values: Vec<String>,
        kind: MetricKind,
        apply: impl FnOnce(&Series),
    ) {
        let key = (metric, label_values);
        if let Some(series) = self.series.get(&key) {
            if series.kind() == kind {
                apply(series);
            } else {
                self.dropped(metric);
            }
            return;
        }
        let (metric, label_values) = key;
        let entry = self.handles.get(metric as usize);
        let Some(entry) =
            entry.filter(|e| e.kind() == kind && e.label_names.len() == label_values.len())
        else {
            self.dropped(metric);
            return;
        };
        let mut labels = Vec::with_capacity(label_values.len() + 1);
        labels.push(("filter".to_owned(), self.filter.to_string()));
        labels.extend(
            entry
                .label_names
                .iter()
                .cloned()
                .zip(label_values.iter().map(|v| truncated(v))),
        );
        if !entry.family.contains(&labels) {
            let created = entry.series.fetch_add(1, Ordering::Relaxed);
            if created >= MAX_SERIES_PER_FILTER_METRIC as u64 {
                entry.series.fetch_sub(1, Ordering::Relaxed);
                for (_, value) in labels.iter_mut().skip(1) {
                    "overflow".clone_into(value);
                }
                self.registry.count_overflow(&self.filter, &entry.name);
            }
        }
        let series = match &entry.family {
            FamilyOf::Counter(f) => Series::Counter(f.get_or_create(&labels).clone()),
            FamilyOf::Gauge(f) => Series::Gauge(f.get_or_create(&labels).clone()),
            FamilyOf::Histogram(f) => Series::Histogram(f.get_or_create(&labels).clone()),
        };
        apply(&series);
        if self.series.len() < MAX_CACHED_SERIES {
            self.series.insert((metric, label_values), series);
        }
    }

    fn dropped(&self, metric: Metric) {
        tracing::debug!(
            target: "weft::filter",
            filter = &*self.filter,
            metric,
            "dropped a metric update with an unknown handle, a wrong kind or a wrong label count"
        );
        self.registry.count_error(&self.filter);
    }
}

impl Host for HostState {
    fn define_counter(
        &mut self,
        name: String,
        help: String,
        labels: Vec<String>,
    ) -> wasmtime::Result<Result<Metric, DefineError>> {
        Ok(self
            .metrics
            .define(MetricKind::Counter, &name, &help, labels, None))
    }

    fn define_gauge(
        &mut self,
        name: String,
        help: String,
        labels: Vec<String>,
    ) -> wasmtime::Result<Result<Metric, DefineError>> {
        Ok(self
            .metrics
            .define(MetricKind::Gauge, &name, &help, labels, None))
    }

    fn define_histogram(
        &mut self,
        name: String,
        help: String,
        labels: Vec<String>,
        buckets: Vec<f64>,
    ) -> wasmtime::Result<Result<Metric, DefineError>> {
        Ok(self
            .metrics
            .define(MetricKind::Histogram, &name, &help, labels, Some(buckets)))
    }

    fn counter_add(
        &mut self,
        metric: Metric,
        label_values: Vec<String>,
        delta: u64,
    ) -> wasmtime::Result<()> {
        self.metrics
            .update(metric, label_values, MetricKind::Counter, |series| {
                if let Series::Counter(c) = series {
                    c.inc_by(delta);
                }
            });
        Ok(())
    }

    fn gauge_set(
        &mut self,
        metric: Metric,
        label_values: Vec<String>,
        value: i64,
    ) -> wasmtime::Result<()> {
        self.metrics
            .update(metric, label_values, MetricKind::Gauge, |series| {
                if let Series::Gauge(g) = series {
                    g.set(value);
                }
            });
        Ok(())
    }

    fn gauge_add(
        &mut self,
        metric: Metric,
        label_values: Vec<String>,
        delta: i64,
    ) -> wasmtime::Result<()> {
        self.metrics
            .update(metric, label_values, MetricKind::Gauge, |series| {
                if let Series::Gauge(g) = series {
                    g.inc_by(delta);
                }
            });
        Ok(())
    }

    fn histogram_observe(
        &mut self,
        metric: Metric,
        label_values: Vec<String>,
        value: f64,
    ) -> wasmtime::Result<()> {
        self.metrics
            .update(metric, label_values, MetricKind::Histogram, |series| {
                if let Series::Histogram(h) = series {
                    h.observe(value);
                }
            });
        Ok(())
    }
}
