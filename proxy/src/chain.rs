//! A route's filter chain, and one request's trip through it.

use std::sync::Arc;

use bytes::Bytes;

use weft_runtime::{
    Directives, FilterFailure, Lease, LoadedFilter, RequestHead, RequestInfo, ResponseHead,
    SentRequest, Verdict,
};
use weft_runtime::{FailureKind, FailurePolicy, Hook, Isolation};

use crate::outbound::Outbound;

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

/// What the chain decided, from its filters' verdicts (the runtime's name for one hook's
/// result is [`Verdict`]; the chain's, over all its filters, is `Outcome`).
pub(crate) enum Outcome {
    /// Go on.
    Continue,
    /// Send this response.
    Respond(http::Response<Bytes>),
    /// A fail-closed filter failed.
    Failed(FilterFailure),
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
    /// filter is isolated per request or limited to some requests (or, later, when a filter
    /// attaches state to the request or makes a call).
    pub(crate) fn leases(&self, head: &RequestHead) -> Leases {
        Leases {
            len: self.filters.len(),
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

    /// Run `phase` over the filters that declared its hook, in chain order (request phases)
    /// or in reverse (response phases), stopping at the first local reply or fail-closed
    /// failure. A delay holds this request (and only it) on a timer where it was asked for,
    /// then the chain goes on, or answers with the delay's response. A call is sent through
    /// `outbound` while the request waits (holding no instance), and the filter's
    /// `on-call-response` verdict takes the place of the hook's. Fail-open failures skip the
    /// filter.
    pub(crate) async fn run(
        &self,
        leases: &mut Leases,
        info: &RequestInfo,
        outbound: &Outbound<'_>,
        mut phase: Phase<'_>,
    ) -> Outcome {
        let n = self.filters.len();
        let reverse = phase.is_response();
        for pos in 0..n {
            let i = if reverse { n - 1 - pos } else { pos };
            let filter = &self.filters[i].filter;
            if !phase.wanted_by(filter) || leases.skips(i) {
                continue;
            }
            let lease = leases.get(i);
            let mut verdict = match &mut phase {
                Phase::RequestHeaders { head, directives } => {
                    filter
                        .on_request_headers(lease, head, directives, info)
                        .await
                }
                Phase::RequestBody {
                    head,
                    directives,
                    body,
                } => {
                    filter
                        .on_request_body(lease, head, directives, info, body)
                        .await
                }
                Phase::ResponseHeaders { request, head } => {
                    filter.on_response_headers(lease, request, info, head).await
                }
                Phase::ResponseBody {
                    request,
                    head,
                    body,
                } => {
                    filter
                        .on_response_body(lease, request, info, head, body)
                        .await
                }
            };
            while let Ok(Verdict::Call(call)) = verdict {
                let result = outbound.call(filter, call).await;
                verdict = match &mut phase {
                    Phase::RequestHeaders { head, directives }
                    | Phase::RequestBody {
                        head, directives, ..
                    } => {
                        filter
                            .on_call_response(lease, head, directives, info, result)
                            .await
                    }
                    // The runtime refuses `call` from response hooks.
                    Phase::ResponseHeaders { .. } | Phase::ResponseBody { .. } => {
                        Err(FilterFailure {
                            filter: filter.name().clone(),
                            hook: Hook::CallResponse,
                            kind: FailureKind::InvalidAction,
                            message: "`call` from a response hook".into(),
                        })
                    }
                };
            }
            leases.keep(i);
            match verdict {
                // A call never gets here: the loop above makes calls until another verdict.
                Ok(Verdict::Continue | Verdict::Call(_)) => {}
                Ok(Verdict::Respond(r)) => return Outcome::Respond(r),
                Ok(Verdict::Delay(duration, then)) => {
                    // Over the filter's cap of held requests the delay is skipped (and
                    // counted): a client asking for delays must not be able to hold
                    // unbounded requests.
                    if let Some(_held) = filter.hold_delay() {
                        tokio::time::sleep(duration).await;
                    }
                    if let Some(response) = then {
                        return Outcome::Respond(response);
                    }
                }
                Err(failure) => {
                    filter.record_failure(&failure);
                    match filter.failure_policy() {
                        FailurePolicy::FailOpen => {}
                        FailurePolicy::FailClosed => return Outcome::Failed(failure),
                    }
                }
            }
        }
        Outcome::Continue
    }
}

/// One phase of a request's trip through the chain, with what its hook may see and change.
pub(crate) enum Phase<'a> {
    /// `on-request-headers`.
    RequestHeaders {
        head: &'a mut RequestHead,
        directives: &'a mut Directives,
    },
    /// `on-request-body`, with the whole body.
    RequestBody {
        head: &'a mut RequestHead,
        directives: &'a mut Directives,
        body: &'a mut Bytes,
    },
    /// `on-response-headers`; the request is read-only.
    ResponseHeaders {
        request: &'a Arc<SentRequest>,
        head: &'a mut ResponseHead,
    },
    /// `on-response-body`, with the whole body.
    ResponseBody {
        request: &'a Arc<SentRequest>,
        head: &'a mut ResponseHead,
        body: &'a mut Bytes,
    },
}

impl Phase<'_> {
    fn is_response(&self) -> bool {
        matches!(
            self,
            Phase::ResponseHeaders { .. } | Phase::ResponseBody { .. }
        )
    }

    fn wanted_by(&self, filter: &LoadedFilter) -> bool {
        let hooks = filter.hooks();
        match self {
            Phase::RequestHeaders { .. } => hooks.request_headers,
            Phase::RequestBody { .. } => hooks.request_body,
            Phase::ResponseHeaders { .. } => hooks.response_headers,
            Phase::ResponseBody { .. } => hooks.response_body,
        }
    }
}

/// What one request holds of its filters: instances for filters isolated per request, state
/// filters attached to it, their calls. One [`Lease`] per filter once any holds something;
/// until then a single scratch lease serves every call.
pub(crate) struct Leases {
    len: usize,
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

    /// After filter `i`'s calls: when the scratch lease now holds something of the request
    /// (state, calls made), give every filter its own lease and keep it there.
    fn keep(&mut self, i: usize) {
        if self.held.is_empty() && self.scratch.holds_anything() {
            self.held = (0..self.len).map(|_| Lease::default()).collect();
            if let Some(lease) = self.held.get_mut(i) {
                *lease = std::mem::take(&mut self.scratch);
            }
        }
    }
}
