//! Test guest for the host capabilities of WIT 0.2, driven by request headers:
//! - `x-steer: <name>`: `set-upstream(name)`; every request gets `x-saw-upstream: <upstream()>`
//!   (as the request was before the choice) on its response.
//! - `x-add-response: <value>`: `add-response-header("x-added", value)`.
//! - `x-delay-ms: <n>`: `delay` for n ms; with `x-delay-then: <status>` the delay ends in a local
//!   response with that status.
//! - path `/local`: a local 200 reply `local`.

use std::time::Duration;

use weft_sdk::{Action, Filter, Hooks, LocalResponse, Request};

/// Does what the request headers say.
pub struct Steer;

impl Filter for Steer {
    type Config = ();
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Steer)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let before = request.upstream().unwrap_or_else(|| "none".to_owned());
        let _ = request.add_response_header("x-saw-upstream", &before);
        if let Some(name) = request.header("x-steer") {
            let _ = request.set_upstream(&name);
        }
        if let Some(value) = request.header("x-add-response") {
            let _ = request.add_response_header("x-added", value);
        }
        if let Some(ms) = request.header("x-delay-ms").and_then(|v| v.parse().ok()) {
            let duration = Duration::from_millis(ms);
            return match request.header("x-delay-then").and_then(|v| v.parse().ok()) {
                Some(status) => {
                    Action::delay_then(duration, LocalResponse::new(status).body("late\n"))
                }
                None => Action::delay(duration),
            };
        }
        if request.path() == "/local" {
            return Action::Respond(LocalResponse::new(200).body("local"));
        }
        Action::Continue
    }
}

weft_sdk::export_filter!(Steer);
