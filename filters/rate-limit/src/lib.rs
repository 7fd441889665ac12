//! Placeholder: being written.

use weft_sdk::{Filter, Hooks};

/// Placeholder filter.
pub struct Placeholder;

impl Filter for Placeholder {
    type Config = ();
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Placeholder)
    }
}

weft_sdk::export_filter!(Placeholder);
