//! Upstreams: named sets of endpoints — configured in the file, or a discovered service's
//! port — with pooled HTTP/1.1 and HTTP/2 connections per endpoint, a load balancer, subsets,
//! a circuit breaker, passive outlier detection and optional active health checks.
//!
//! An upstream's endpoints can change while it serves (a reload, a discovery update): the
//! set is swapped whole, endpoints that stay keep their connection pools and their state, and
//! a removed endpoint's connections drain — requests in flight hold it until they end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use weft_identity::SpiffeId;
use weft_identity::tls::MeshTls;
use weft_runtime::error_chain;
use weft_traffic::balance::Balancer;
use weft_traffic::budget::Budget;
use weft_traffic::endpoint::{self as state, EndpointState, Outcome};
use weft_traffic::policy::{HashOn, LoadBalancer, Policy};

use crate::body::{self, ProxyBody};
use crate::config::{EndpointConfig, Limits, UpstreamConfig, UpstreamProtocol, UpstreamTls};
use crate::mesh::{self, Outbound};
use crate::metrics::UpstreamMetrics;
use crate::respond::Refusal;

mod connect;
mod health;

use self::connect::{ConnLimit, FixedConnector};
pub(crate) use self::connect::{OverLimit, Overflow};

/// How to make connections to an upstream's endpoints; shared by all of them.
#[derive(Debug)]
struct Connecting {
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Mesh mTLS, and the identity the endpoints must have (none: any of the mesh).
    tls: Option<(Arc<MeshTls>, Option<SpiffeId>)>,
    handshakes: mesh::Handshakes,
    limit: Arc<ConnLimit>,
}

/// One endpoint's connection pools, made on first use (a discovered service may have many
/// endpoints that this proxy never talks to).
#[derive(Debug)]
struct Pools {
    address: Arc<str>,
    http1: OnceLock<Client<FixedConnector, ProxyBody>>,
    http2: OnceLock<Client<FixedConnector, ProxyBody>>,
}

impl Pools {
    fn client(&self, h2: bool, connecting: &Connecting) -> &Client<FixedConnector, ProxyBody> {
        let make = || {
            let connector = FixedConnector {
                endpoint: self.address.clone(),
                connect_timeout: connecting.connect_timeout,
                tls: connecting.tls.as_ref().map(|(mesh, identity)| {
                    Outbound::new(
                        mesh,
                        h2,
                        &self.address,
                        identity.as_ref(),
                        connecting.handshakes.clone(),
                    )
                }),
                limit: connecting.limit.clone(),
            };
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_idle_timeout(connecting.idle_timeout)
                .pool_timer(TokioTimer::new());
            if h2 {
                builder.http2_only(true).timer(TokioTimer::new());
            }
            builder.build(connector)
        };
        if h2 {
            self.http2.get_or_init(make)
        } else {
            self.http1.get_or_init(make)
        }
    }
}

/// One endpoint: where it is, its live state and labels, its pools.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) address: Arc<str>,
    pub(crate) state: EndpointState,
    labels: BTreeMap<String, String>,
    pools: Arc<Pools>,
}

impl AsRef<EndpointState> for Member {
    fn as_ref(&self) -> &EndpointState {
        &self.0.state
    }
}

/// An endpoint as a member of a set (the balancer reaches its state through this).
#[derive(Debug, Clone)]
struct Member(Arc<Endpoint>);

/// Endpoints and the balancer over them.
#[derive(Debug)]
struct Group {
    members: Vec<Member>,
    balancer: Balancer,
}

impl Group {
    fn new(lb: &LoadBalancer, members: Vec<Member>) -> Self {
        let states: Vec<&EndpointState> = members.iter().map(|m| &m.0.state).collect();
        let balancer = Balancer::new(lb, &states);
        Self { members, balancer }
    }
}

/// The current endpoints, with one group per subset.
#[derive(Debug)]
struct EndpointSet {
    all: Group,
    subsets: HashMap<String, Group>,
}

/// A named upstream.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: Arc<str>,
    protocol: UpstreamProtocol,
    /// The whole request's timeout (to the response head), unless the route sets one.
    pub(crate) timeout: Duration,
    pub(crate) policy: Policy,
    /// Shared by every request to this upstream that uses its retry policy.
    pub(crate) budget: Option<Budget>,
    endpoints: ArcSwap<EndpointSet>,
    connecting: Connecting,
    in_flight: Arc<AtomicU32>,
    pub(crate) metrics: UpstreamMetrics,
    /// The health-check task, stopped when the upstream is dropped.
    health: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What it was built from (its endpoints as first built).
    config: UpstreamConfig,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(task) = weft_runtime::lock(&self.health).take() {
            task.abort();
        }
    }
}

impl Upstream {
    /// `mesh` is the proxy's mTLS, used when the upstream has `tls: { mode: mesh }`.
    pub(crate) fn new(
        config: &UpstreamConfig,
        mesh: &Arc<MeshTls>,
        handshakes: &mesh::Handshakes,
        metrics: UpstreamMetrics,
    ) -> Arc<Self> {
        let policy = config.policy.clone();
        let breaker = policy.circuit_breaker;
        let upstream = Arc::new(Self {
            name: config.name.as_str().into(),
            protocol: config.protocol,
            timeout: config.timeout,
            budget: policy.retries.as_ref().map(|r| Budget::new(r.budget)),
            endpoints: ArcSwap::from_pointee(EndpointSet {
                all: Group::new(&policy.load_balancer, Vec::new()),
                subsets: HashMap::new(),
            }),
            connecting: Connecting {
                connect_timeout: config.connect_timeout,
                idle_timeout: config.idle_timeout,
                tls: match &config.tls {
                    UpstreamTls::Disabled => None,
                    UpstreamTls::Mesh { identity } => Some((mesh.clone(), identity.clone())),
                },
                handshakes: handshakes.clone(),
                limit: Arc::new(ConnLimit::new(
                    breaker.max_connections,
                    breaker.max_pending_requests,
                )),
            },
            in_flight: Arc::new(AtomicU32::new(0)),
            metrics,
            health: Mutex::new(None),
            policy,
            config: config.clone(),
        });
        upstream.set_endpoints(&config.endpoints);
        if let Some(check) = &upstream.policy.health_check
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let task = runtime.spawn(health::run(Arc::downgrade(&upstream), check.clone()));
            *weft_runtime::lock(&upstream.health) = Some(task);
        }
        upstream
    }

    /// What the upstream was built from.
    pub(crate) fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Whether `config` describes this upstream but for its endpoints: then the upstream can
    /// take the new endpoints in place and keep its pools.
    pub(crate) fn same_but_endpoints(a: &UpstreamConfig, b: &UpstreamConfig) -> bool {
        a.name == b.name
            && a.protocol == b.protocol
            && a.connect_timeout == b.connect_timeout
            && a.timeout == b.timeout
            && a.idle_timeout == b.idle_timeout
            && a.tls == b.tls
            && a.policy == b.policy
    }

    /// Swap in a new set of endpoints. Endpoints that stay (same address) keep their pools,
    /// and their state too unless their weight or readiness changed; removed ones drain.
    pub(crate) fn set_endpoints(&self, configs: &[EndpointConfig]) {
        let current = self.endpoints.load();
        let known: HashMap<&str, &Arc<Endpoint>> = current
            .all
            .members
            .iter()
            .map(|m| (&*m.0.address, &m.0))
            .collect();
        let health_checked = self.policy.health_check.is_some();
        let members: Vec<Member> = configs
            .iter()
            .filter(|c| c.weight > 0)
            .map(|c| match known.get(c.address.as_str()) {
                Some(e)
                    if e.state.weight() == c.weight
                        && e.state.ready() == c.ready
                        && e.labels == c.labels =>
                {
                    Member(Arc::clone(e))
                }
                Some(e) => Member(Arc::new(Endpoint {
                    address: e.address.clone(),
                    state: EndpointState::new(&c.address, c.weight, c.ready, health_checked),
                    labels: c.labels.clone(),
                    pools: e.pools.clone(),
                })),
                None => {
                    let address: Arc<str> = c.address.as_str().into();
                    Member(Arc::new(Endpoint {
                        state: EndpointState::new(&c.address, c.weight, c.ready, health_checked),
                        labels: c.labels.clone(),
                        pools: Arc::new(Pools {
                            address: address.clone(),
                            http1: OnceLock::new(),
                            http2: OnceLock::new(),
                        }),
                        address,
                    }))
                }
            })
            .collect();
        let lb = &self.policy.load_balancer;
        let subsets = self
            .policy
            .subsets
            .iter()
            .map(|(name, labels)| {
                let members = members
                    .iter()
                    .filter(|m| labels.iter().all(|(k, v)| m.0.labels.get(k) == Some(v)))
                    .cloned()
                    .collect();
                (name.clone(), Group::new(lb, members))
            })
            .collect();
        drop(known);
        self.endpoints.store(Arc::new(EndpointSet {
            all: Group::new(lb, members),
            subsets,
        }));
    }

    /// The current endpoints (for health checks and status).
    pub(crate) fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints
            .load()
            .all
            .members
            .iter()
            .map(|m| m.0.clone())
            .collect()
    }

    /// Count the request against `max_requests`, or refuse it at once.
    pub(crate) fn admit(&self) -> Result<Admitted, Refusal> {
        let max = self.policy.circuit_breaker.max_requests;
        if self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(self.overflow(Overflow::Requests, max));
        }
        Ok(Admitted(self.in_flight.clone()))
    }

    /// The refusal for a request over one of the circuit breaker's limits, counted.
    pub(crate) fn overflow(&self, kind: Overflow, limit: u32) -> Refusal {
        self.metrics.overflow(kind);
        Refusal::Overflow {
            upstream: self.name.clone(),
            limit: kind.as_str(),
            value: limit,
        }
    }

    /// The request value the consistent hash is taken of, if the policy hashes and the
    /// request has it.
    pub(crate) fn hash(&self, headers: &http::HeaderMap) -> Option<u64> {
        let LoadBalancer::ConsistentHash(on) = &self.policy.load_balancer else {
            return None;
        };
        match on {
            HashOn::Header(name) => headers
                .get(name)
                .map(|v| weft_traffic::balance::hash_key(v.as_bytes())),
            HashOn::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .find_map(|h| weft_text::cookie_value(h.as_bytes(), name))
                .map(weft_traffic::balance::hash_key),
        }
    }

    /// The endpoint for a try: of the subset if one is named, avoiding `exclude` (the one
    /// the previous try failed on) when another is left.
    pub(crate) fn pick(
        &self,
        subset: Option<&str>,
        hash: Option<u64>,
        exclude: Option<&Arc<Endpoint>>,
    ) -> Result<Arc<Endpoint>, Refusal> {
        let set = self.endpoints.load();
        let group = match subset {
            None => &set.all,
            Some(name) => set
                .subsets
                .get(name)
                .ok_or_else(|| Refusal::UnknownSubset {
                    upstream: self.name.clone(),
                    subset: name.into(),
                })?,
        };
        let exclude = exclude.and_then(|e| {
            group
                .members
                .iter()
                .position(|m| Arc::ptr_eq(&m.0, e) || m.0.address == e.address)
        });
        match group.balancer.pick(&group.members, hash, exclude) {
            Some(i) => Ok(group.members[i].0.clone()),
            None => Err(Refusal::NoEndpoints {
                upstream: self.name.clone(),
                subset: subset.map(Into::into),
            }),
        }
    }

    /// Whether requests to this upstream speak HTTP/2 when the client used `downstream`.
    pub(crate) fn uses_h2(&self, downstream: http::Version) -> bool {
        match self.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Auto => downstream == http::Version::HTTP_2,
        }
    }

    /// Send `request` to `endpoint`. `h2` from [`uses_h2`](Self::uses_h2).
    pub(crate) fn send(
        &self,
        endpoint: &Endpoint,
        mut request: http::Request<ProxyBody>,
        h2: bool,
    ) -> hyper_util::client::legacy::ResponseFuture {
        let client = endpoint.pools.client(h2, &self.connecting);
        // One authority, decided when the request arrived, travels in the URI: `:authority`
        // for HTTP/2, and a `Host` that equals it for HTTP/1.1.
        if h2 {
            *request.version_mut() = http::Version::HTTP_2;
            request.headers_mut().remove(http::header::HOST);
        } else {
            *request.version_mut() = http::Version::HTTP_11;
            if !request.headers().contains_key(http::header::HOST)
                && let Some(authority) = request.uri().authority()
                && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
            {
                request.headers_mut().insert(http::header::HOST, host);
            }
        }
        client.request(request)
    }

    /// Record how a try at `endpoint` ended; ejects it when outlier detection says so.
    pub(crate) fn record(&self, endpoint: &Endpoint, outcome: Outcome, latency: Duration) {
        let outlier = self.policy.outlier_detection.as_ref();
        if endpoint.state.record(outcome, latency, outlier)
            && let Some(outlier) = outlier
        {
            let now = weft_traffic::now_ms();
            let set = self.endpoints.load();
            if state::may_eject(set.all.members.iter().map(|m| &m.0.state), outlier, now) {
                let time = endpoint.state.eject(outlier, now);
                self.metrics.ejected();
                tracing::warn!(
                    upstream = &*self.name,
                    endpoint = &*endpoint.address,
                    for_ = ?time,
                    "endpoint ejected after consecutive failures"
                );
            }
        }
    }

    /// A request to `endpoint` for a health check: the path, HTTP/1.1 (or h2 for an
    /// HTTP/2-only upstream).
    pub(crate) async fn probe(&self, endpoint: &Endpoint, path: &str, timeout: Duration) -> bool {
        let h2 = self.protocol == UpstreamProtocol::Http2;
        let Ok(request) = http::Request::get(format!("http://{}{path}", endpoint.address))
            .header(http::header::USER_AGENT, "weft-health-check")
            .body(body::full(bytes::Bytes::new()))
        else {
            return false;
        };
        let started = Instant::now();
        match tokio::time::timeout(timeout, self.send(endpoint, request, h2)).await {
            Ok(Ok(response)) => {
                let ok = response.status().is_success();
                tracing::debug!(upstream = &*self.name, endpoint = &*endpoint.address,
                    status = response.status().as_u16(), took = ?started.elapsed(), "health check");
                ok
            }
            Ok(Err(e)) => {
                tracing::debug!(upstream = &*self.name, endpoint = &*endpoint.address,
                    error = %error_chain(&e), "health check failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// A request counted against `max_requests` until this drops (with the response body).
#[derive(Debug)]
pub(crate) struct Admitted(Arc<AtomicU32>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a try failed, for the retry decision, the outlier detector and the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryFailure {
    /// No connection: the upstream never saw the request.
    Connect,
    /// The connection failed before a response head.
    Reset,
    /// Over the connection limit (not the endpoint's fault).
    Overflow(Overflow, u32),
    /// The client's body failed or was too large (not the endpoint's fault).
    Client,
}

/// Classify a hyper client error.
pub(crate) fn classify(error: &hyper_util::client::legacy::Error) -> TryFailure {
    if body::is_too_large(error) || body::is_client_error(error) {
        return TryFailure::Client;
    }
    if let Some(over) = find_source::<OverLimit>(error) {
        return TryFailure::Overflow(over.kind, over.limit);
    }
    if error.is_connect() {
        TryFailure::Connect
    } else {
        TryFailure::Reset
    }
}

fn find_source<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps: look at that one too.
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<T>())
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// What the client is told when sending to upstream `name` failed, and who caused it: the
/// client's body (over its limit, or broken off) or the upstream (no connection, a bad or
/// interrupted response). Upstream failures are logged here, with the whole error chain.
pub(crate) fn refusal(
    upstream: &Upstream,
    error: &hyper_util::client::legacy::Error,
    limits: &Limits,
) -> Refusal {
    let name = &upstream.name;
    if body::is_too_large(error) {
        return Refusal::BodyTooLarge {
            limit: limits.max_request_body_bytes,
        };
    }
    if body::is_client_error(error) {
        tracing::debug!(upstream = &**name, error = %error_chain(error), "the client's request body failed");
        return Refusal::ClientBody { detail: None };
    }
    if let Some(over) = find_source::<OverLimit>(error) {
        return upstream.overflow(over.kind, over.limit);
    }
    if error.is_connect() {
        tracing::warn!(upstream = &**name, error = %error_chain(error), "upstream connect failed");
        return Refusal::UpstreamConnect {
            upstream: name.clone(),
        };
    }
    tracing::warn!(upstream = &**name, error = %error_chain(error), "upstream request failed");
    Refusal::UpstreamFailed {
        upstream: name.clone(),
    }
}
