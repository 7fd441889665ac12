//! Test guest: reads the `x-user` request header and continues. The hook-call benchmark uses it
//! to measure the cost of one hook call with one header lookup.

use std::hint::black_box;

use weft_sdk::{Action, Filter, Hooks, Request};

/// Does next to nothing.
pub struct Noop;

impl Filter for Noop {
    type Config = ();
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Noop)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        black_box(request.header("x-user"));
        Action::Continue
    }
}

weft_sdk::export_filter!(Noop);
