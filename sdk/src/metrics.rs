//! Metrics defined by the filter, exported on the proxy's Prometheus endpoint as
//! `weft_filter_<name>` with a `filter` label plus the filter's own labels.
//!
//! Define metrics in [`Filter::new`](crate::Filter::new) and keep the handles in the filter
//! value: a handle is only valid in the instance that defined it, and every new instance runs
//! `new` again. Defining a metric that already exists with the same kind and labels (as those
//! instances do) shares its series; a different kind or label set is a
//! [`DefineError::Conflict`]. Updates pass one value per label, in the order the labels were defined; an update with the
//! wrong number of values is dropped by the proxy and counted in
//! `weft_filter_errors_total{kind="metric"}`.
//!
//! ```no_run
//! use weft_sdk::metrics::{Counter, Histogram};
//! use weft_sdk::{Action, Filter, Request};
//!
//! struct Measured {
//!     requests: Counter,
//!     path_len: Histogram,
//! }
//!
//! impl Filter for Measured {
//!     type Config = ();
//!
//!     fn new(_config: ()) -> Result<Self, String> {
//!         let requests = Counter::define("requests", "Requests seen.", &["method"])
//!             .map_err(|e| e.to_string())?;
//!         let path_len = Histogram::define("path_len", "Path lengths.", &[], &[1.0, 10.0, 100.0])
//!             .map_err(|e| e.to_string())?;
//!         Ok(Measured { requests, path_len })
//!     }
//!
//!     fn on_request_headers(&self, request: &Request) -> Action {
//!         self.requests.add(&[&request.method()], 1);
//!         self.path_len.observe(&[], request.path().len() as f64);
//!         Action::Continue
//!     }
//! }
//! # weft_sdk::export_filter!(Measured);
//! ```

use std::fmt;

use crate::bindings::weft::filter::metrics as raw;

/// A monotonically increasing count. A handle is valid in the instance that defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter(raw::Metric);

impl Counter {
    /// Define (or look up, if already defined identically) a counter.
    ///
    /// `name` and each label name must match `[a-z_][a-z0-9_]*`; `filter` is a reserved label.
    pub fn define(name: &str, help: &str, labels: &[&str]) -> Result<Counter, DefineError> {
        raw::define_counter(name, help, labels)
            .map(Counter)
            .map_err(DefineError::from_raw)
    }

    /// Add `delta` to the series with these label values.
    pub fn add(self, label_values: &[&str], delta: u64) {
        raw::counter_add(self.0, label_values, delta);
    }
}

/// A value that goes up and down. A handle is valid in the instance that defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gauge(raw::Metric);

impl Gauge {
    /// Define (or look up, if already defined identically) a gauge.
    ///
    /// Naming rules as for [`Counter::define`].
    pub fn define(name: &str, help: &str, labels: &[&str]) -> Result<Gauge, DefineError> {
        raw::define_gauge(name, help, labels)
            .map(Gauge)
            .map_err(DefineError::from_raw)
    }

    /// Set the series with these label values to `value`.
    pub fn set(self, label_values: &[&str], value: i64) {
        raw::gauge_set(self.0, label_values, value);
    }

    /// Add `delta` (negative to subtract) to the series with these label values.
    pub fn add(self, label_values: &[&str], delta: i64) {
        raw::gauge_add(self.0, label_values, delta);
    }
}

/// A distribution of observations, counted in buckets. A handle is valid in the instance that
/// defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Histogram(raw::Metric);

impl Histogram {
    /// Define (or look up, if already defined identically) a histogram with these upper bucket
    /// bounds, which must be finite and strictly increasing (the proxy adds `+Inf`).
    ///
    /// Naming rules as for [`Counter::define`].
    pub fn define(
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<Histogram, DefineError> {
        raw::define_histogram(name, help, labels, buckets)
            .map(Histogram)
            .map_err(DefineError::from_raw)
    }

    /// Record one observation in the series with these label values.
    pub fn observe(self, label_values: &[&str], value: f64) {
        raw::histogram_observe(self.0, label_values, value);
    }
}

/// Why the proxy refused a metric definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DefineError {
    /// The metric name is not `[a-z_][a-z0-9_]*`, or a label name is not, or uses a reserved
    /// label (`filter`). Carries the proxy's explanation.
    InvalidName(String),
    /// The name is already defined with another kind or other label names. Carries the proxy's
    /// explanation.
    Conflict(String),
    /// Histogram buckets must be finite and strictly increasing.
    InvalidBuckets,
}

impl DefineError {
    fn from_raw(raw: raw::DefineError) -> DefineError {
        match raw {
            raw::DefineError::InvalidName(detail) => DefineError::InvalidName(detail),
            raw::DefineError::Conflict(detail) => DefineError::Conflict(detail),
            raw::DefineError::InvalidBuckets => DefineError::InvalidBuckets,
        }
    }
}

impl fmt::Display for DefineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefineError::InvalidName(detail) => write!(f, "invalid metric name: {detail}"),
            DefineError::Conflict(detail) => write!(f, "conflicting metric definition: {detail}"),
            DefineError::InvalidBuckets => {
                f.write_str("histogram buckets must be finite and strictly increasing")
            }
        }
    }
}

impl std::error::Error for DefineError {}
