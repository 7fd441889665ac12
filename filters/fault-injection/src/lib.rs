//! weft's fault-injection filter: aborts some requests with a local error and holds others on a
//! timer, by percentage, limited to some routes, upstreams or callers, or on request when a
//! chaos test sends `x-weft-fault-*` headers (only with `header_faults: true`).
//!
//! ```yaml
//! filters:
//!   - name: faults
//!     module: fault_injection.wasm
//!     config:
//!       abort: { status: 503, percentage: 10 }
//!       delay: { duration: 100ms, percentage: 50 }
//!       only: { routes: [checkout] }
//! ```
//!
//! A delay is the host's `delay` action: the proxy holds the request on a timer and nothing else
//! waits for it. `README.md` is the configuration reference.

pub mod config;
pub mod decide;

use weft_sdk::metrics::Counter;
use weft_sdk::{Action, Filter, Hooks, LocalResponse, Request};

use crate::config::{Config, Settings};
use crate::decide::{Decision, HeaderRequest, HeaderValues, decide, headers};

/// The body of an abort, as Envoy's fault filter sends it.
pub const ABORT_BODY: &str = "fault filter abort";

/// The filter: the validated settings and the metric handles of this instance.
pub struct FaultInjection {
    settings: Settings,
    metrics: Metrics,
}

struct Metrics {
    /// `fault_injection_requests{decision}`: one per request.
    requests: Counter,
    /// `fault_injection_injected{fault, source}`: one per fault that fired.
    injected: Counter,
    /// `fault_injection_invalid_headers{header}`: one per ignored header value.
    invalid_headers: Counter,
}

impl Metrics {
    fn define() -> Result<Metrics, String> {
        let define = |name: &str, help: &str, labels: &[&str]| {
            Counter::define(name, help, labels).map_err(|e| format!("defining {name}: {e}"))
        };
        Ok(Metrics {
            requests: define(
                "fault_injection_requests",
                "Requests seen, by decision: passed, skipped (outside `only`), injected_abort, \
                 injected_delay, injected_delayed_abort.",
                &["decision"],
            )?,
            injected: define(
                "fault_injection_injected",
                "Faults injected, by fault (abort, delay) and source (config, header).",
                &["fault", "source"],
            )?,
            invalid_headers: define(
                "fault_injection_invalid_headers",
                "x-weft-fault-* header values ignored because they were invalid, by header.",
                &["header"],
            )?,
        })
    }

    fn count(&self, decision: Decision) {
        self.requests.add(&[decision.label()], 1);
        match decision {
            Decision::Pass => {}
            Decision::Abort(_, source) => self.injected.add(&["abort", source.label()], 1),
            Decision::Delay(_, source) => self.injected.add(&["delay", source.label()], 1),
            Decision::DelayedAbort {
                delay_source,
                abort_source,
                ..
            } => {
                self.injected.add(&["delay", delay_source.label()], 1);
                self.injected.add(&["abort", abort_source.label()], 1);
            }
        }
    }
}

impl Filter for FaultInjection {
    type Config = Config;
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultInjection {
            settings: Settings::from_config(config)?,
            metrics: Metrics::define()?,
        })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        if !self.settings.only.admits(request) {
            self.metrics.requests.add(&["skipped"], 1);
            return Action::Continue;
        }
        let asked = if self.settings.header_faults {
            self.read_header_faults(request)
        } else {
            HeaderRequest::default()
        };
        let decision = decide(&self.settings, &asked, weft_sdk::random::u64);
        self.metrics.count(decision);
        match decision {
            Decision::Pass => Action::Continue,
            Decision::Abort(status, _) => Action::Respond(abort_response(status)),
            Decision::Delay(duration, _) => Action::delay(duration),
            Decision::DelayedAbort { delay, status, .. } => {
                Action::delay_then(delay, abort_response(status))
            }
        }
    }
}

impl FaultInjection {
    /// Read the fault headers and remove them: they are meant for this hop, not the upstream.
    /// Invalid values are counted and logged at debug, never fatal.
    fn read_header_faults(&self, request: &Request) -> HeaderRequest {
        let mut values = HeaderValues::default();
        for (slot, name) in values.values.iter_mut().zip(headers::ALL) {
            *slot = request.header_bytes(name);
        }
        if values.is_empty() {
            return HeaderRequest::default();
        }
        for (value, name) in values.values.iter().zip(headers::ALL) {
            if value.is_some()
                && let Err(e) = request.remove_header(name)
            {
                // Not expected for these names in a request hook; the fault still applies.
                weft_sdk::warn!("cannot remove {name}: {e}");
            }
        }
        let asked = HeaderRequest::parse(&values, self.settings.max_delay);
        for ((invalid, value), name) in asked.invalid.iter().zip(&values.values).zip(headers::ALL) {
            if *invalid {
                self.metrics.invalid_headers.add(&[name], 1);
                let value = String::from_utf8_lossy(value.as_deref().unwrap_or_default());
                weft_sdk::debug!("ignoring invalid {name}: {value:?}");
            }
        }
        if asked.delay_capped {
            weft_sdk::debug!(
                "{}: delay cut to max_delay ({} ms)",
                headers::DELAY,
                self.settings.max_delay.as_millis()
            );
        }
        asked
    }
}

/// The local response of an abort.
fn abort_response(status: u16) -> LocalResponse {
    LocalResponse::new(status)
        .header("content-type", "text/plain")
        .body(ABORT_BODY)
}

weft_sdk::export_filter!(FaultInjection);
