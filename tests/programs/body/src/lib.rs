//! Test guest: rewrites bodies, so it declares all four hooks.
//!
//! Request body: containing `forbidden` gets a local `400` with body `forbidden body`; otherwise
//! the body is sent upstream with `!` appended. Response body: upper-cased (ASCII).

use weft_sdk::{Action, Body, Filter, Hooks, LocalResponse, Request, Response};

/// Rewrites bodies.
pub struct BodyFilter;

impl Filter for BodyFilter {
    type Config = ();
    const HOOKS: Hooks = Hooks::all();

    fn new(_config: ()) -> Result<Self, String> {
        Ok(BodyFilter)
    }

    fn on_request_body(&self, _request: &Request, body: &Body) -> Action {
        let mut contents = body.read();
        if contents
            .windows(b"forbidden".len())
            .any(|w| w == b"forbidden")
        {
            return Action::Respond(LocalResponse::new(400).body("forbidden body"));
        }
        contents.push(b'!');
        body.write(contents);
        Action::Continue
    }

    fn on_response_body(&self, _request: &Request, _response: &Response, body: &Body) -> Action {
        let mut contents = body.read();
        contents.make_ascii_uppercase();
        body.write(contents);
        Action::Continue
    }
}

weft_sdk::export_filter!(BodyFilter);
