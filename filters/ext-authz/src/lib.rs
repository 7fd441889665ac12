//! weft's external authorization filter (Envoy's `ext_authz` with an HTTP service): each request
//! is checked by an authorization service before it goes on. The filter sends
//! `<method> <path_prefix><path and query>` with the configured request headers to an upstream
//! of the proxy; a 2xx answer lets the request through (with headers the service chose), any
//! other answer below 500 goes to the client as it is, and a failed check (timeout, service
//! down, 5xx) denies the request with `status_on_error`, or lets it through with
//! `failure_mode_allow: true`.
//!
//! ```yaml
//! filters:
//!   - name: ext-authz
//!     module: ext_authz.wasm
//!     config:
//!       upstream: authz
//!       path_prefix: /check
//!       allowed_headers: [authorization, cookie]
//!       upstream_headers_from_auth: [x-user-id]
//! ```
//!
//! The check is the host's `call` action: the request waits without holding a thread or an
//! instance. `README.md` is the configuration reference.

pub mod config;
pub mod decide;

use weft_sdk::metrics::Counter;
use weft_sdk::{Action, CallError, CallResponse, Filter, Hooks, Request};

use crate::config::{Config, Settings};
use crate::decide::{Decision, apply, check_request, decide};

/// The filter: the validated settings and the metric handles of this instance.
pub struct ExtAuthz {
    settings: Settings,
    metrics: Metrics,
}

struct Metrics {
    /// `ext_authz_decisions{decision}`: one per checked request.
    decisions: Counter,
    /// `ext_authz_errors{kind}`: one per failed check.
    errors: Counter,
}

impl Metrics {
    fn define() -> Result<Metrics, String> {
        let define = |name: &str, help: &str, labels: &[&str]| {
            Counter::define(name, help, labels).map_err(|e| format!("defining {name}: {e}"))
        };
        Ok(Metrics {
            decisions: define(
                "ext_authz_decisions",
                "Checked requests, by decision: allowed (2xx answer), denied (other answer), \
                 error_allowed (failed check, failure_mode_allow), error_denied (failed check).",
                &["decision"],
            )?,
            errors: define(
                "ext_authz_errors",
                "Failed checks, by kind: unknown_upstream, invalid_request, timeout, \
                 response_too_large, too_many_calls, unavailable, server_error (5xx), other.",
                &["kind"],
            )?,
        })
    }
}

impl Filter for ExtAuthz {
    type Config = Config;
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(config: Config) -> Result<Self, String> {
        Ok(ExtAuthz {
            settings: Settings::from_config(config)?,
            metrics: Metrics::define()?,
        })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        Action::Call(check_request(&self.settings, request))
    }

    fn on_call_response(
        &self,
        request: &Request,
        result: Result<CallResponse, CallError>,
    ) -> Action {
        let decision = decide(&self.settings, &result, || {
            request
                .headers()
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        });
        self.metrics.decisions.add(&[decision.label()], 1);
        match &decision {
            Decision::Allowed(_) => {}
            Decision::Denied(response) => {
                weft_sdk::debug!(
                    "denied {} {}: the authorization service answered {}",
                    request.method(),
                    request.path(),
                    response.status
                );
            }
            Decision::ErrorAllowed(kind, _) | Decision::ErrorDenied(kind, _) => {
                self.metrics.errors.add(&[kind.label()], 1);
                let detail = match &result {
                    Ok(answer) => format!("the service answered {}", answer.status),
                    Err(error) => error.to_string(),
                };
                let outcome = if matches!(decision, Decision::ErrorAllowed(..)) {
                    "request allowed (failure_mode_allow)".to_owned()
                } else {
                    format!("request denied with {}", self.settings.status_on_error)
                };
                weft_sdk::warn!(
                    "authorization check of {} {} failed ({}): {detail}; {outcome}",
                    request.method(),
                    request.path(),
                    kind.label()
                );
            }
        }
        if let Err((name, error)) = apply(decision.edits(), request) {
            weft_sdk::warn!("cannot edit request header {name}: {error}");
        }
        decision.into_action()
    }
}

weft_sdk::export_filter!(ExtAuthz);

#[cfg(test)]
mod tests;
