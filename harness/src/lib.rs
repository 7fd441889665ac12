//! Test a weft filter in `cargo test`, on the proxy's own runtime: the same wasmtime engine,
//! host functions, token buckets and metrics the proxy runs, in-process and without sockets.
//!
//! Add it as a dev-dependency of the filter crate; [`build_this_crate!`] builds the crate the
//! test belongs to for `wasm32-wasip2` and gives the component's path, and [`Harness`] runs it:
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_harness::{Decision, Harness, TestRequest};
//!
//! let wasm = weft_harness::build_this_crate!();
//! let filter = Harness::builder("limit", &wasm)
//!     .config(serde_json::json!({
//!         "limits": [{ "name": "per_client", "key": ["client_address"], "capacity": 1,
//!                      "refill": { "amount": 1, "interval": "1s" } }]
//!     }))
//!     .seed(7)
//!     .load()
//!     .expect("the filter accepts its config");
//! let decide = || filter.decide(&mut TestRequest::get("/")).expect("no failure");
//! assert_eq!(decide(), Decision::Continue);
//! assert_eq!(decide(), Decision::Respond(429));
//! filter.advance(Duration::from_secs(1));
//! assert_eq!(decide(), Decision::Continue);
//! ```

//!
//! For several filters together over real HTTP, [`chain::ChainHarness`] starts a real proxy and
//! a recording upstream in-process on `127.0.0.1:0`.
//!
//! The crate also holds the filter author's command line, `weft`: `weft filter new` creates a
//! filter crate ([`scaffold`]), `weft filter test` runs YAML cases on a built filter
//! ([`cases`]).

mod build;
pub mod cases;
pub mod chain;
mod harness;
pub mod scaffold;
mod scrape;

pub use build::{BuildError, build_crate};
pub use harness::*;
pub use scrape::{MissingSample, Scrape};
pub use serde_json;
