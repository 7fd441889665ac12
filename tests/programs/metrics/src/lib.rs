//! Test guest: defines one metric of each kind when configured and updates them on every
//! request, and logs `saw request <path>` at info level.
//!
//! Metrics: counter `requests_seen` (label `method`), gauge `last_path_len` and histogram
//! `path_len` (buckets 1, 10, 100), both without labels and both set from the path's length.

use weft_sdk::metrics::{Counter, Gauge, Histogram};
use weft_sdk::{Action, Filter, Hooks, Request, log};

/// Counts and measures requests.
pub struct Metrics {
    requests_seen: Counter,
    last_path_len: Gauge,
    path_len: Histogram,
}

impl Filter for Metrics {
    type Config = ();
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(_config: ()) -> Result<Self, String> {
        let requests_seen = Counter::define("requests_seen", "Requests seen.", &["method"])
            .map_err(|e| e.to_string())?;
        let last_path_len = Gauge::define("last_path_len", "Length of the last path.", &[])
            .map_err(|e| e.to_string())?;
        let path_len = Histogram::define("path_len", "Path lengths.", &[], &[1.0, 10.0, 100.0])
            .map_err(|e| e.to_string())?;
        Ok(Metrics {
            requests_seen,
            last_path_len,
            path_len,
        })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let path = request.path();
        self.requests_seen.add(&[&request.method()], 1);
        self.last_path_len
            .set(&[], i64::try_from(path.len()).unwrap_or(i64::MAX));
        self.path_len.observe(&[], path.len() as f64);
        log::info(&format!("saw request {path}"));
        Action::Continue
    }
}

weft_sdk::export_filter!(Metrics);
