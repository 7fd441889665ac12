//! Test guest: loops forever on paths starting with `/loop`, so that the host's deadline has to
//! interrupt it; other requests get the request header `x-spin: passed` and continue.

use std::hint::black_box;

use weft_sdk::{Action, Filter, Request};

/// Spins on `/loop...`.
pub struct Spin;

impl Filter for Spin {
    type Config = ();

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Spin)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        if request.path().starts_with("/loop") {
            // `black_box` keeps the optimizer from proving the loop useless.
            let mut turns: u64 = 0;
            loop {
                turns = black_box(turns.wrapping_add(1));
            }
        }
        request.set_header("x-spin", "passed").expect("set x-spin");
        Action::Continue
    }
}

weft_sdk::export_filter!(Spin);
