//! Test guest: returns invalid actions, which the host must treat as filter failures.
//!
//! Path `/bad-status`: a local response with status 42. Path `/bad-header`: a local `200` with a
//! header named `bad name`. Anything else continues.

use weft_sdk::{Action, Filter, LocalResponse, Request};

/// Misbehaves on purpose.
pub struct BadAction;

impl Filter for BadAction {
    type Config = ();
    const HOOKS: weft_sdk::Hooks = weft_sdk::Hooks::REQUEST_HEADERS;

    fn new(_config: ()) -> Result<Self, String> {
        Ok(BadAction)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let path = request.path();
        match path.split('?').next().unwrap_or_default() {
            "/bad-status" => Action::Respond(LocalResponse::new(42)),
            "/bad-header" => Action::Respond(LocalResponse::new(200).header("bad name", "x")),
            _ => Action::Continue,
        }
    }
}

weft_sdk::export_filter!(BadAction);
