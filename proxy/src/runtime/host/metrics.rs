//! `weft:filter/metrics`: metrics defined by filters.
//!
//! A handle is an index into the defining instance's own table, so updates cost no lock; the
//! series behind it are shared by every instance and version of filters that define the same
//! metric identically.

use std::sync::Arc;

use super::HostState;
use crate::metrics::{
    DefineFailure, DynLabels, FamilyOf, FilterMetricRegistry, MetricEntry, MetricKind,
};
use crate::runtime::bindings::weft::filter::metrics::{DefineError, Host, Metric};

/// The metrics one instance has defined, indexed by the handles it was given.
pub(crate) struct InstanceMetrics {
    filter: Arc<str>,
    registry: Arc<FilterMetricRegistry>,
    handles: Vec<Arc<MetricEntry>>,
}

impl InstanceMetrics {
    pub(crate) fn new(filter: Arc<str>, registry: Arc<FilterMetricRegistry>) -> Self {
        Self {
            filter,
            registry,
            handles: Vec::new(),
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
    fn update(
        &self,
        metric: Metric,
        label_values: Vec<String>,
        kind: MetricKind,
        apply: impl FnOnce(&FamilyOf, &DynLabels),
    ) {
        let entry = self.handles.get(metric as usize);
        let Some(entry) =
            entry.filter(|e| e.kind() == kind && e.label_names.len() == label_values.len())
        else {
            self.dropped(metric);
            return;
        };
        let mut labels = Vec::with_capacity(label_values.len() + 1);
        labels.push(("filter".to_owned(), self.filter.to_string()));
        labels.extend(entry.label_names.iter().cloned().zip(label_values));
        apply(&entry.family, &labels);
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
        self.metrics.update(
            metric,
            label_values,
            MetricKind::Counter,
            |family, labels| {
                if let FamilyOf::Counter(f) = family {
                    f.get_or_create(labels).inc_by(delta);
                }
            },
        );
        Ok(())
    }

    fn gauge_set(
        &mut self,
        metric: Metric,
        label_values: Vec<String>,
        value: i64,
    ) -> wasmtime::Result<()> {
        self.metrics
            .update(metric, label_values, MetricKind::Gauge, |family, labels| {
                if let FamilyOf::Gauge(f) = family {
                    f.get_or_create(labels).set(value);
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
            .update(metric, label_values, MetricKind::Gauge, |family, labels| {
                if let FamilyOf::Gauge(f) = family {
                    f.get_or_create(labels).inc_by(delta);
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
        self.metrics.update(
            metric,
            label_values,
            MetricKind::Histogram,
            |family, labels| {
                if let FamilyOf::Histogram(f) = family {
                    f.get_or_create(labels).observe(value);
                }
            },
        );
        Ok(())
    }
}
