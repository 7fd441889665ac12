//! Write weft proxy filters in Rust: implement [`Filter`], export it with [`export_filter!`], and
//! build for `wasm32-wasip2`.
//!
//! A filter is a WebAssembly component for the `weft:filter/filter` world (`wit/filter.wit`). The
//! proxy keeps a few warm instances of it; each instance is configured once with the filter's
//! configuration and then serves hook calls for many requests, one call at a time. This crate
//! hides the component-model plumbing: the configuration arrives as your own
//! [`serde::Deserialize`] type, the hooks get typed handles ([`Request`], [`Response`], [`Body`]),
//! and they return an [`Action`].
//!
//! # Example
//!
//! A filter that rejects requests lacking a configured header:
//!
//! ```no_run
//! use serde::Deserialize;
//! use weft_sdk::{Action, Filter, Hooks, LocalResponse, Request};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     required_header: String,
//! }
//!
//! struct RequireHeader {
//!     config: Config,
//! }
//!
//! impl Filter for RequireHeader {
//!     type Config = Config;
//!     const HOOKS: Hooks = Hooks::REQUEST_HEADERS;
//!
//!     fn new(config: Config) -> Result<Self, String> {
//!         if config.required_header.is_empty() {
//!             return Err("required_header must not be empty".to_owned());
//!         }
//!         Ok(RequireHeader { config })
//!     }
//!
//!     fn on_request_headers(&self, request: &Request) -> Action {
//!         match request.header(&self.config.required_header) {
//!             Some(_) => Action::Continue,
//!             None => {
//!                 weft_sdk::info!("rejected {} {}", request.method(), request.path());
//!                 Action::Respond(
//!                     LocalResponse::new(400)
//!                         .header("content-type", "text/plain")
//!                         .body("missing header\n"),
//!                 )
//!             }
//!         }
//!     }
//! }
//!
//! weft_sdk::export_filter!(RequireHeader);
//! ```
//!
//! Build it as a component (the crate must be a `cdylib`) with
//! `cargo build --release --target wasm32-wasip2`. In the weft workspace, use the small
//! `guest` profile: `cargo build --profile guest --target wasm32-wasip2 -p my-filter`.
//!
//! # Lifecycle
//!
//! - The proxy calls `configure` on every new instance with the filter's configuration as JSON
//!   (`null` when the proxy config gives none). The SDK deserializes it into
//!   [`Filter::Config`], calls [`Filter::new`] and keeps the value for the instance's lifetime.
//!   Errors name the offending field, e.g.
//!   ``config field `limits[0].capacity`: invalid type: string "x", expected u32``. An error
//!   rejects this version of the filter.
//! - The hooks listed in [`Filter::HOOKS`] are then called with `&self`, one at a time. State
//!   shared between requests needs interior mutability (`Cell`, `RefCell`): a wasm instance is
//!   single-threaded, but the proxy runs several instances, so per-instance state is not global
//!   state.
//! - Request, response and body handles are only valid during the hook call they are passed to.
//!
//! # Panics
//!
//! A panic in a filter aborts the instance (the guest is built with `panic = "abort"`) and the
//! proxy handles the failure with the filter's failure policy. Before aborting, a panic hook that
//! the SDK installs during `configure` sends the panic message and its source location to the
//! proxy (`log.report-panic`), which attaches it to the error it reports. Installing your own hook
//! with [`std::panic::set_hook`] replaces that behaviour.
//!
//! # Host services
//!
//! [`log`] writes to the proxy's structured log (see also the [`info!`] family of macros),
//! [`clock`] and [`random`] are controlled by the host (tests can move time and seed randomness),
//! and [`metrics`] defines Prometheus metrics exported by the proxy. [`token_bucket`] and
//! [`store`] keep state shared by every instance on every worker (the store with
//! compare-and-swap and expiry); [`crypto`] verifies signatures natively in the host.
//!
//! # Calling out, and state for one request
//!
//! A hook waits for another service by returning [`Action::Call`]: the proxy sends the
//! [`CallRequest`] through its own upstream pools and calls [`Filter::on_call_response`] with
//! the answer or a [`CallError`]. Nothing is held meanwhile, not even this instance, so what
//! the later hook needs goes into the request's state ([`Request::set_state`]):
//!
//! ```no_run
//! use weft_sdk::{Action, CallError, CallRequest, CallResponse, Filter, LocalResponse, Request};
//!
//! struct AskFirst;
//!
//! impl Filter for AskFirst {
//!     type Config = ();
//!     fn new(_: ()) -> Result<Self, String> {
//!         Ok(AskFirst)
//!     }
//!
//!     fn on_request_headers(&self, request: &Request) -> Action {
//!         let user = request.header("x-user").unwrap_or_default();
//!         Action::Call(CallRequest::get("policy", "/allowed").header("x-user", user))
//!     }
//!
//!     fn on_call_response(
//!         &self,
//!         _request: &Request,
//!         answer: Result<CallResponse, CallError>,
//!     ) -> Action {
//!         match answer {
//!             Ok(r) if r.is_success() => Action::Continue,
//!             Ok(r) => Action::Respond(LocalResponse::new(r.status).body(r.body)),
//!             Err(_) => Action::Respond(LocalResponse::new(503).body("policy unavailable\n")),
//!         }
//!     }
//! }
//! # weft_sdk::export_filter!(AskFirst);
//! ```
//!
//! The SDK is for `weft:filter@0.3.0`; the proxy also loads filters built with the SDK for
//! 0.2.0, unchanged.
//!
//! # Helpers
//!
//! [`text`] parses what requests and configs hold (header names, cookies, percent-escapes,
//! durations, client addresses) without panicking on any input. [`facts`] describes a request
//! as traits ([`facts::RequestFacts`], [`facts::RequestEdits`]) implemented by [`Request`] and by
//! [`facts::FakeRequest`], an in-memory request for native unit tests of filter logic.

mod call;
mod config;
mod export;
mod filter;
mod http;

pub mod clock;
pub mod crypto;
pub mod facts;
pub mod log;
pub mod metrics;
pub mod random;
pub mod store;
pub use weft_text as text;
pub mod token_bucket;

pub use call::{CallError, CallRequest, CallResponse};
pub use filter::{Action, Filter, Hooks, LocalResponse};
pub use http::{Body, Direction, EditError, Request, Response};

#[doc(hidden)]
pub use export::__private;

/// The raw bindings generated by `wit-bindgen` for the `weft:filter/filter` world.
///
/// Used by [`export_filter!`]; filters should not need them.
#[doc(hidden)]
#[allow(
    unsafe_code,
    missing_docs,
    unreachable_pub,
    clippy::all,
    rust_2018_idioms
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:filter/filter",
        // `export_filter!` expands to this macro in the filter's crate, where the exported
        // functions must live; it refers to the types through `$crate`.
        pub_export_macro: true,
        export_macro_name: "__weft_export",
        default_bindings_module: "weft_sdk::bindings",
        // Imports take borrowed lists (`&[&str]`), so a metric update's label values cross
        // without a `Vec<String>` built per call: allocation was ~40 % of the guests' own time
        // in the four-filter profile (bench/results/2026-12-07-guest-side.md).
        ownership: Borrowing {
            duplicate_if_necessary: false
        },
    });
}

/// Export a [`Filter`] implementation as the component's `handler` interface.
///
/// Invoke it once, at the root of the filter's crate (a `cdylib`), with the filter type:
///
/// ```no_run
/// # use weft_sdk::Filter;
/// struct Noop;
///
/// impl Filter for Noop {
///     type Config = ();
///     fn new(_config: ()) -> Result<Self, String> {
///         Ok(Noop)
///     }
/// }
///
/// weft_sdk::export_filter!(Noop);
/// ```
///
/// The generated `configure` export deserializes the JSON configuration into
/// [`Filter::Config`], calls [`Filter::new`], installs the SDK's panic hook and returns
/// [`Filter::HOOKS`]. Calling `configure` again replaces the filter value; if the new
/// configuration is rejected, the previous value stays. The hook exports call the matching
/// [`Filter`] methods.
///
/// The exports exist only when compiling for wasm. On other targets the macro only checks that
/// the type implements [`Filter`], so that the crate still builds, links (as a `cdylib` too) and
/// runs its unit tests natively.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        const _: () = {
            const fn assert_filter<F: $crate::Filter>() {}
            assert_filter::<$filter>();
        };

        // Only wasm has a component to export into. Natively the exports would also break
        // linking the crate's `cdylib`: symbol names like `weft:filter/handler@0.1.0#configure`
        // are not valid in a linker version script. The check above still runs everywhere.
        //
        // The exported functions are `unsafe extern "C"` with `#[unsafe(export_name)]`: the
        // component ABI glue generated by wit-bindgen.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            type __WeftFilterExport = $crate::__private::Exporter<$filter>;
            $crate::bindings::__weft_export!(
                __WeftFilterExport with_types_in $crate::bindings
            );
        };
    };
}
