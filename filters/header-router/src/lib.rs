//! weft's first-party header-router filter: ordered rules match requests on path, method,
//! headers and query parameters; the first that matches sends the request to a named upstream
//! or splits traffic by weight (optionally sticky per user), and edits request and response
//! headers. Requests no rule matches keep the route's upstream, or take the `default` action.
//!
//! `README.md` is the configuration reference. The matching and choosing logic lives in
//! `route.rs`, written against the SDK's request traits so that it is unit-tested natively on a
//! fake request; this file only connects it to the SDK and counts decisions.

use std::cell::RefCell;

use weft_sdk::metrics::Counter;
use weft_sdk::{Action, EditError, Filter, Hooks, Request};

pub mod config;
mod route;
mod text;

pub use config::Config;
use route::{Facts, NO_RULE, Router};

/// The metric counting decisions: `weft_filter_header_router_decisions_total{rule, upstream}`.
const DECISIONS: &str = "header_router_decisions";

/// The header-router filter: one per instance, built from the configuration once.
pub struct HeaderRouter {
    router: Router,
    decisions: Counter,
    /// Header values fetched for the current request, kept between requests so that the
    /// request path does not allocate the table each time.
    scratch: RefCell<Vec<Option<Vec<Vec<u8>>>>>,
}

impl Filter for HeaderRouter {
    type Config = Config;
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(config: Config) -> Result<Self, String> {
        let router = Router::new(config)?;
        let decisions = Counter::define(
            DECISIONS,
            "Requests routed, by the rule that matched (`default`, or `none` when no rule \
             matched) and the upstream they were sent to.",
            &["rule", "upstream"],
        )
        .map_err(|error| error.to_string())?;
        let scratch = RefCell::new(Vec::with_capacity(router.header_names.len()));
        Ok(HeaderRouter {
            router,
            decisions,
            scratch,
        })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let mut fresh = Vec::new();
        let mut scratch = self.scratch.try_borrow_mut();
        let scratch = match scratch.as_deref_mut() {
            Ok(scratch) => scratch,
            // Hooks never nest; a fresh table keeps this correct if one ever did.
            Err(_) => &mut fresh,
        };
        let mut facts = Facts::new(request, &self.router.header_names, scratch);
        let decision = self
            .router
            .route(&mut facts, weft_sdk::random::u64, report_refused_edit);
        drop(facts);
        // Values are only valid for this request: free them now rather than at the next one.
        scratch.clear();

        let current;
        let upstream = match decision.upstream {
            Some(upstream) => upstream,
            // The rule kept the route's upstream (or no rule matched): label with that.
            None => {
                current = request.upstream();
                current.as_deref().unwrap_or(NO_RULE)
            }
        };
        self.decisions.add(&[decision.rule, upstream], 1);
        Action::Continue
    }
}

fn report_refused_edit(what: &str, name: &str, error: EditError) {
    weft_sdk::warn!("header-router: cannot {what} {name:?}: {error}");
}

weft_sdk::export_filter!(HeaderRouter);
