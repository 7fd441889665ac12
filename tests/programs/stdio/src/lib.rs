//! Test guest: uses Rust's standard I/O the way a filter author debugging a filter would.
//! `println!` and `eprintln!` must not disturb the host; `thread::sleep` (path `/sleep`) must
//! trap the guest rather than block or crash the proxy.

#![allow(clippy::print_stdout)] // Printing is what this guest tests.

use std::collections::HashMap;

use weft_sdk::{Action, Filter, Request};

/// Prints on every request; sleeps on `/sleep`.
pub struct Stdio;

impl Filter for Stdio {
    type Config = ();

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Stdio)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let path = request.path();
        println!("stdio filter saw {path}");
        eprintln!("stdio filter saw {path} (stderr)");
        // A std HashMap seeds itself from wasi:random.
        let seen: HashMap<&str, usize> = HashMap::from([("path", path.len())]);
        if path == "/sleep" {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = request.set_header("x-stdio", seen["path"].to_string());
        Action::Continue
    }
}

weft_sdk::export_filter!(Stdio);
