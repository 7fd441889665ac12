//! A route's filter chain, and one request's trip through it.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::{FailurePolicy, Isolation};
use crate::runtime::{
    FilterFailure, Lease, LoadedFilter, RequestHead, RequestInfo, ResponseHead, Verdict,
};

/// One filter in a chain, with the requests it is limited to.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) filter: Arc<LoadedFilter>,
    /// None: every request of the route.
    pub(crate) when: Option<Arc<RequestMatch>>,
}

impl Link {
    /// A filter that sees every request of its route.
    pub(crate) fn always(filter: Arc<LoadedFilter>) -> Self {
        Self { filter, when: None }
    }
}

/// Which requests a filter sees, decided once per request from the head as it arrived.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestMatch {
    /// Empty: every path.
    pub(crate) path_prefixes: Vec<String>,
    /// Empty: every method.
    pub(crate) methods: Vec<http::Method>,
}

impl RequestMatch {
    fn matches(&self, head: &RequestHead) -> bool {
        let path = head.uri.path();
        (self.path_prefixes.is_empty()
            || self
                .path_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str())))
            && (self.methods.is_empty() || self.methods.contains(&head.method))
    }
}

/// The filters of one route, in order, with what they declared folded together.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    filters: Vec<Link>,
    /// Some filter wants `on-request-headers`.
    pub(crate) request_headers: bool,
    /// Some filter wants the request body buffered.
    pub(crate) request_body: bool,
    /// Some filter wants `on-response-headers`.
    pub(crate) response_headers: bool,
    /// Some filter wants the response body buffered.
    pub(crate) response_body: bool,
    per_request: bool,
    /// Some filter sees only some requests.
    conditional: bool,
}

/// What the chain decided.
pub(crate) enum Outcome {
    /// Go on.
    Continue,
    /// Send this response.
    Respond(http::Response<Bytes>),
    /// A fail-closed filter failed.
    Failed(FilterFailure),
    /// A filter asked to hold the request this long; then the chain goes on from `resume`, or
    /// the response `then` is sent.
    Delay {
        /// How long.
        duration: std::time::Duration,
        /// The step to resume from, for the chain call's `from`.
        resume: usize,
        /// The response to send after the delay instead of going on.
        then: Option<http::Response<Bytes>>,
    },
}

impl Chain {
    pub(crate) fn new(filters: Vec<Link>) -> Self {
        let any = |f: fn(&LoadedFilter) -> bool| filters.iter().any(|x| f(&x.filter));
        Self {
            conditional: filters.iter().any(|l| l.when.is_some()),
            request_headers: any(|f| f.hooks().request_headers),
            request_body: any(|f| f.hooks().request_body),
            response_headers: any(|f| f.hooks().response_headers),
            response_body: any(|f| f.hooks().response_body),
            per_request: any(|f| f.isolation() == Isolation::PerRequest),
            filters,
        }
    }

    /// Instances held for one request, and which filters it skips; allocates only when a
    /// filter is isolated per request or limited to some requests.
    pub(crate) fn leases(&self, head: &RequestHead) -> Leases {
        Leases {
            held: if self.per_request {
                (0..self.filters.len()).map(|_| Lease::default()).collect()
            } else {
                Vec::new()
            },
            skip: if self.conditional {
                self.filters
                    .iter()
                    .map(|l| l.when.as_ref().is_some_and(|w| !w.matches(head)))
                    .collect()
            } else {
                Vec::new()
            },
            scratch: Lease::default(),
        }
    }

    /// Run `call` over the filters that declared a hook, forward or in reverse, starting at step
    /// `from` (0 for a new run; a delay's `resume` to go on after it) and stopping at the first
    /// local reply, delay or fail-closed failure. Fail-open failures skip the filter.
    fn run(
        &self,
        leases: &mut Leases,
        from: usize,
        reverse: bool,
        wants: fn(&LoadedFilter) -> bool,
        mut call: impl FnMut(&LoadedFilter, &mut Lease) -> Result<Verdict, FilterFailure>,
    ) -> Outcome {
        let n = self.filters.len();
        let mut step = |pos: usize| -> Option<Outcome> {
            let i = if reverse { n - 1 - pos } else { pos };
            let filter = &self.filters[i].filter;
            if !wants(filter) || leases.skips(i) {
                return None;
            }
            match call(filter, leases.get(i)) {
                Ok(Verdict::Continue) => None,
                Ok(Verdict::Respond(r)) => Some(Outcome::Respond(r)),
                Ok(Verdict::Delay(duration, then)) => Some(Outcome::Delay {
                    duration,
                    resume: pos + 1,
                    then,
                }),
                Err(failure) => {
                    filter.record_failure(&failure);
                    match filter.failure_policy() {
                        FailurePolicy::FailOpen => None,
                        FailurePolicy::FailClosed => Some(Outcome::Failed(failure)),
                    }
                }
            }
        };
        (from..n).find_map(&mut step).unwrap_or(Outcome::Continue)
    }

    pub(crate) fn on_request_headers(
        &self,
        leases: &mut Leases,
        from: usize,
        head: &mut RequestHead,
        info: &RequestInfo,
    ) -> Outcome {
        self.run(
            leases,
            from,
            false,
            |f| f.hooks().request_headers,
            |f, l| f.on_request_headers(l, head, info),
        )
    }

    pub(crate) fn on_request_body(
        &self,
        leases: &mut Leases,
        from: usize,
        head: &mut RequestHead,
        info: &RequestInfo,
        body: &mut Bytes,
    ) -> Outcome {
        self.run(
            leases,
            from,
            false,
            |f| f.hooks().request_body,
            |f, l| f.on_request_body(l, head, info, body),
        )
    }

    pub(crate) fn on_response_headers(
        &self,
        leases: &mut Leases,
        from: usize,
        request: &Arc<RequestHead>,
        info: &RequestInfo,
        head: &mut ResponseHead,
    ) -> Outcome {
        self.run(
            leases,
            from,
            true,
            |f| f.hooks().response_headers,
            |f, l| f.on_response_headers(l, request, info, head),
        )
    }

    pub(crate) fn on_response_body(
        &self,
        leases: &mut Leases,
        from: usize,
        request: &Arc<RequestHead>,
        info: &RequestInfo,
        head: &mut ResponseHead,
        body: &mut Bytes,
    ) -> Outcome {
        self.run(
            leases,
            from,
            true,
            |f| f.hooks().response_body,
            |f, l| f.on_response_body(l, request, info, head, body),
        )
    }
}

/// The instances one request holds, for filters isolated per request.
pub(crate) struct Leases {
    held: Vec<Lease>,
    /// Per filter: true when this request is outside the filter's match. Empty: none is.
    skip: Vec<bool>,
    scratch: Lease,
}

impl Leases {
    fn skips(&self, i: usize) -> bool {
        self.skip.get(i).copied().unwrap_or(false)
    }

    fn get(&mut self, i: usize) -> &mut Lease {
        match self.held.get_mut(i) {
            Some(lease) => lease,
            None => &mut self.scratch,
        }
    }
}
