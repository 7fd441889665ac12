//! Test guest: `on_request_headers` panics with `trap filter panicked on purpose`, so the
//! instance traps after the SDK's panic hook reported the message to the host.

use weft_sdk::{Action, Filter, Request};

/// Panics on every request.
pub struct Trap;

impl Filter for Trap {
    type Config = ();

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Trap)
    }

    fn on_request_headers(&self, _request: &Request) -> Action {
        panic!("trap filter panicked on purpose")
    }
}

weft_sdk::export_filter!(Trap);
