//! Routing: a listener's routes, and the one a request takes.
//!
//! A listener's routes and their filter chains are swapped whole on a reload; a request loads
//! them once ([`ListenerState::table`]) and keeps that version to its end.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use weft_runtime::RequestHead;

use crate::build::RouteTable;
use crate::chain::Chain;
use crate::config::{
    Direction, HeaderRule, Limits, PathMatch, PathNormalization, RetryPolicy, RouteMatch,
    UpstreamRef,
};
use crate::discovery::Registry;
use crate::mesh::Inbound;
use crate::metrics::{ConnectionMetrics, RouteMetrics};
use crate::upstream::Upstream;
use weft_traffic::budget::Budget;

/// A listener: what is fixed while it runs, and its routes, swapped whole on a reload.
#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) name: Arc<str>,
    pub(crate) direction: Direction,
    pub(crate) limits: Limits,
    /// How request paths are normalized (fixed: a change needs a restart like the address).
    pub(crate) paths: PathNormalization,
    /// The mTLS step of `tls: strict | permissive` (fixed like `paths`).
    pub(crate) inbound_tls: Option<Inbound>,
    /// Where the caller's SPIFFE ID goes upstream; a client's copy is always removed.
    pub(crate) peer_identity_header: Option<http::HeaderName>,
    /// Requests that matched no route, or were refused before routing.
    pub(crate) unmatched: RouteMetrics,
    pub(crate) connections: ConnectionMetrics,
    /// The routes and their chains. Each request loads it once and keeps that version.
    pub(crate) table: ArcSwap<RouteTable>,
    /// Services discovered from the control plane (none without one).
    pub(crate) services: Option<Arc<Registry>>,
}

/// One route: how to match, where to send, which filters run.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) matcher: RouteMatch,
    pub(crate) target: Target,
    /// The route's own timeout; without one, the upstream's applies.
    pub(crate) timeout: Option<Duration>,
    /// The route's own retry policy; without one, the upstream's applies. Its budget is the
    /// route's.
    pub(crate) retries: Option<(RetryPolicy, Arc<Budget>)>,
    pub(crate) chain: Chain,
    pub(crate) metrics: RouteMetrics,
}

impl ListenerState {
    /// The upstream `reference` names: one of `table`'s, or else a service this listener
    /// discovered. For a filter's `set-upstream` and for its calls alike.
    pub(crate) fn upstream(
        &self,
        table: &RouteTable,
        reference: &UpstreamRef,
    ) -> Option<Arc<Upstream>> {
        match table.upstreams.get(reference.name.as_str()) {
            Some(upstream) => Some(upstream.clone()),
            None => self.services.as_deref()?.by_name(reference),
        }
    }
}

impl Route {
    /// Whether a request with this (normalized) head takes this route.
    pub(crate) fn matches(&self, head: &RequestHead) -> bool {
        let path = head.uri.path();
        let path_ok = match &self.matcher.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        };
        path_ok
            && self.matcher.headers.iter().all(|m| {
                let mut values = head.headers.get_all(&m.name).iter();
                match &m.rule {
                    HeaderRule::Present => values.next().is_some(),
                    HeaderRule::Exact(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
                    HeaderRule::Prefix(v) => values.any(|x| x.as_bytes().starts_with(v.as_bytes())),
                }
            })
    }
}

/// Where a route sends requests.
#[derive(Debug)]
pub(crate) enum Target {
    One(Choice),
    /// Weighted: `cumulative[i]` is the sum of the weights up to and including choice `i`.
    Split {
        choices: Vec<Choice>,
        cumulative: Vec<u32>,
    },
    /// The discovered service the request's authority names.
    ByAuthority,
}

/// One upstream a route may send to.
#[derive(Debug)]
pub(crate) struct Choice {
    /// As filters see it (`name` or `name@subset`).
    pub(crate) label: Arc<str>,
    /// A configured upstream; none: a discovered service, looked up per request.
    pub(crate) upstream: Option<Arc<Upstream>>,
    pub(crate) reference: UpstreamRef,
}

impl Target {
    /// The label of route metrics.
    pub(crate) fn metrics_label(&self) -> &str {
        match self {
            Target::One(choice) => &choice.label,
            Target::Split { .. } => "split",
            Target::ByAuthority => "by_authority",
        }
    }
}

/// The first route of `table` that takes a request with this head.
pub(crate) fn select<'t>(table: &'t RouteTable, head: &RequestHead) -> Option<&'t Route> {
    table.routes.iter().find(|r| r.matches(head))
}
