//! The data plane: listeners, routing, the filter chain around each request, and upstreams.

mod admin;
pub(crate) mod body;
mod build;
mod chain;
mod control;
pub(crate) mod hop;
mod normalize;
mod reload;
mod server;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use arc_swap::ArcSwap;

pub use self::body::ProxyBody;
use self::build::{Builder, RouteTable, Used};
use self::chain::{Chain, Outcome, Phase};
use self::reload::Reloader;
pub(crate) use self::server::CloseReason;
use self::upstream::Upstream;
use crate::config::{
    Config, ConfigError, Direction, HeaderRule, Limits, PathMatch, PathNormalization, RouteMatch,
};
use crate::metrics::{ConnectionMetrics, Metrics, RouteMetrics};
use crate::runtime::{FilterFailure, LoadError, RequestHead, RequestInfo, ResponseHead};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A filter could not be loaded or configured.
    #[error("listener \"{listener}\", filter \"{filter}\" (module {}): {source}", module.display())]
    Filter {
        /// The listener the filter belongs to.
        listener: String,
        /// The filter's name.
        filter: String,
        /// Its module path.
        module: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<LoadError>,
    },
    /// The wasm runtime could not start.
    #[error(transparent)]
    Runtime(LoadError),
    /// A listener or the admin endpoint could not bind its address.
    #[error("{what}: cannot listen on {address}: {source}")]
    Bind {
        /// `listener "name"` or `admin`.
        what: String,
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Entry point of the data plane.
#[derive(Debug)]
pub struct Proxy;

/// Everything a config loads, ready to serve but not yet bound.
#[derive(Debug)]
pub struct Loaded {
    listeners: Vec<(Arc<ListenerState>, SocketAddr)>,
    admin: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
}

impl Loaded {
    /// How many filters (listener filters, route overrides and control plane filters) were
    /// configured.
    pub fn filter_count(&self) -> usize {
        self.listeners
            .iter()
            .map(|(l, _)| l.table.load().filters)
            .sum()
    }

    /// How many listeners the config declares.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }
}

impl Proxy {
    /// Compile every module and configure every filter of `config`, without binding anything.
    /// This is what `weft-proxy check` runs.
    pub fn load(config: &Config) -> Result<Loaded, Error> {
        Self::load_with(config, false)
    }

    /// [`Proxy::load`], plus with `restore` the control plane filters of the last good
    /// snapshot kept on disk, if any.
    fn load_with(config: &Config, restore: bool) -> Result<Loaded, Error> {
        let metrics = Arc::new(Metrics::new());
        let mut builder = Builder::new(config, metrics.clone())?;
        let mut used = Used::default();
        let restored = match &config.control_plane {
            Some(cp) if restore => control::restore(cp, &mut builder, &mut used),
            _ => None,
        };
        let dynamic = restored.as_ref().map_or(&[][..], |(d, _)| d.as_slice());
        let tables = builder.tables(config, dynamic, &mut used)?;
        builder.commit(used);
        let listeners: Vec<_> = config
            .listeners
            .iter()
            .zip(tables)
            .map(|(l, table)| {
                let state = ListenerState {
                    name: l.name.as_str().into(),
                    direction: l.direction,
                    limits: config.limits.clone(),
                    paths: l.paths,
                    unmatched: metrics.route(&l.name, "none", "none"),
                    connections: metrics.connections(&l.name, &CloseReason::LABELS),
                    table: ArcSwap::from_pointee(table),
                };
                (Arc::new(state), l.address)
            })
            .collect();
        let reloader = Arc::new(Reloader::new(
            builder,
            config.clone(),
            restored,
            listeners.iter().map(|(l, _)| l.clone()).collect(),
            metrics.clone(),
        ));
        Ok(Loaded {
            listeners,
            admin: config.admin.as_ref().map(|a| a.address),
            metrics,
            reloader,
        })
    }

    /// Load `config`, bind its listeners and admin endpoint, and serve until shut down.
    ///
    /// With a control plane configured, the proxy starts with the last good snapshot kept on
    /// disk (if any) and subscribes in the background: it is ready at once, whether or not
    /// the control plane answers.
    pub async fn start(config: Config) -> Result<RunningProxy, Error> {
        // Compiling modules is CPU work; keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || Proxy::load_with(&config, true))
            .await
            .map_err(|e| Error::Runtime(LoadError::Engine(format!("loader panicked: {e}"))))??;
        Self::serve(loaded).await
    }

    /// Bind and serve what [`Proxy::load`] prepared.
    pub async fn serve(loaded: Loaded) -> Result<RunningProxy, Error> {
        let (shutdown, _) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for (state, address) in loaded.listeners {
            let listener = bind(address).map_err(|source| Error::Bind {
                what: format!("listener \"{}\"", state.name),
                address,
                source,
            })?;
            let local = listener.local_addr().map_err(|source| Error::Bind {
                what: format!("listener \"{}\"", state.name),
                address,
                source,
            })?;
            tracing::info!(listener = &*state.name, address = %local, "listening");
            addrs.push((state.name.to_string(), local));
            tasks.spawn(server::accept_loop(listener, state, shutdown.subscribe()));
        }
        let admin = match loaded.admin {
            Some(address) => {
                let listener = bind(address).map_err(|source| Error::Bind {
                    what: "admin".into(),
                    address,
                    source,
                })?;
                let local = listener.local_addr().map_err(|source| Error::Bind {
                    what: "admin".into(),
                    address,
                    source,
                })?;
                tracing::info!(address = %local, "admin endpoint listening");
                tasks.spawn(admin::serve(
                    listener,
                    loaded.metrics.clone(),
                    ready.clone(),
                    shutdown.subscribe(),
                ));
                Some(local)
            }
            None => None,
        };
        reload::watch_file(&loaded.reloader, &mut tasks, shutdown.subscribe());
        if let Some(cp) = loaded.reloader.control_plane() {
            tasks.spawn(control::run(
                loaded.reloader.clone(),
                cp,
                shutdown.subscribe(),
            ));
        }
        ready.store(true, Ordering::Release);
        Ok(RunningProxy {
            listeners: addrs,
            admin,
            shutdown,
            tasks,
            metrics: loaded.metrics,
            reloader: loaded.reloader,
        })
    }
}

/// How many connections may wait to be accepted. The OS default of 128 drops SYNs under a
/// burst of new connections (each then waits a full second for the client's retransmit).
const LISTEN_BACKLOG: u32 = 1024;

/// Bind a listening socket with [`LISTEN_BACKLOG`].
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do on Unix: a restarted proxy can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A proxy that is serving.
#[derive(Debug)]
pub struct RunningProxy {
    listeners: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
}

impl RunningProxy {
    /// Re-read the config file now and apply it as a file change would: on success new
    /// requests use the new chains; on failure the error is returned and nothing changes.
    pub async fn reload(&self) -> Result<(), Error> {
        let reloader = self.reloader.clone();
        tokio::task::spawn_blocking(move || reloader.reload_file())
            .await
            .map_err(|e| Error::Runtime(LoadError::Engine(format!("reload panicked: {e}"))))?
    }

    /// The control plane snapshot version being served; 0 when none.
    pub fn snapshot_version(&self) -> u64 {
        self.reloader.snapshot_version()
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// The bound address of the admin endpoint.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stop accepting, let in-flight requests finish (up to a deadline), and return.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A listener: what is fixed while it runs, and its routes, swapped whole on a reload.
#[derive(Debug)]
struct ListenerState {
    name: Arc<str>,
    direction: Direction,
    limits: Limits,
    /// How request paths are normalized (fixed: a change needs a restart like the address).
    paths: PathNormalization,
    /// Requests that matched no route, or were refused before routing.
    unmatched: RouteMetrics,
    connections: ConnectionMetrics,
    /// The routes and their chains. Each request loads it once and keeps that version.
    table: ArcSwap<RouteTable>,
}

/// One route: how to match, where to send, which filters run.
#[derive(Debug)]
struct Route {
    name: Arc<str>,
    matcher: RouteMatch,
    upstream: Arc<Upstream>,
    /// The route's own timeout; without one, the upstream's applies.
    timeout: Option<Duration>,
    chain: Chain,
    metrics: RouteMetrics,
}

impl Route {
    fn matches(&self, head: &RequestHead) -> bool {
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

/// A plain-text response from the proxy itself.
fn reply(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn filter_failed(failure: &FilterFailure) -> Response<ProxyBody> {
    // The client learns which filter failed, not why: the detail is in the log and metrics.
    if failure.kind.is_short_circuit() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("weft: filter \"{}\" is unavailable\n", failure.filter),
        );
    }
    reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("weft: filter \"{}\" failed\n", failure.filter),
    )
}

fn local(response: Response<Bytes>) -> Response<ProxyBody> {
    response.map(body::full)
}

async fn handle(
    listener: &ListenerState,
    client: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let (parts, incoming) = request.into_parts();
    let mut head = RequestHead {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        ..RequestHead::default()
    };
    let access = tracing::enabled!(target: "weft::access", tracing::Level::INFO)
        .then(|| (head.method.clone(), head.uri.clone()));
    // The path and authority every later step sees; hop-by-hop fields go as received, before
    // a filter could add one that a client's `Connection` names.
    let refused = normalize::request_head(&mut head, &listener.paths).err();
    // One atomic load: the request runs on this version of the routes and chains to the end,
    // whatever reloads happen meanwhile.
    let table = listener.table.load_full();
    let route = match refused {
        Some(_) => None,
        None => table.routes.iter().find(|r| r.matches(&head)),
    };
    let (response, metrics, route_name, upstream) = match (route, refused) {
        (_, Some(refused)) => (
            reply(StatusCode::BAD_REQUEST, format!("weft: {refused}\n")),
            &listener.unmatched,
            "none",
            "none",
        ),
        (Some(route), None) => {
            let info = RequestInfo {
                client: Some(client),
                listener: listener.name.clone(),
                direction: listener.direction,
                route: Some(route.name.clone()),
            };
            head.upstream = Some(route.upstream.name.clone());
            let response = forward(listener, &table, route, head, incoming, info).await;
            (
                response,
                &route.metrics,
                &*route.name,
                &*route.upstream.name,
            )
        }
        (None, None) => (
            reply(StatusCode::NOT_FOUND, "weft: no route matched\n".into()),
            &listener.unmatched,
            "none",
            "none",
        ),
    };
    let elapsed = start.elapsed();
    metrics.record(response.status().as_u16(), elapsed);
    if let Some((method, uri)) = access {
        tracing::info!(
            target: "weft::access",
            listener = &*listener.name,
            client = %client,
            method = %method,
            path = %uri.path(),
            route = route_name,
            upstream,
            status = response.status().as_u16(),
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    response
}

/// Run the chain around one upstream exchange, then add the response headers filters asked for.
async fn forward(
    listener: &ListenerState,
    table: &RouteTable,
    route: &Route,
    head: RequestHead,
    incoming: Incoming,
    info: RequestInfo,
) -> Response<ProxyBody> {
    let mut added = HeaderMap::new();
    let mut response = exchange(listener, table, route, head, incoming, info, &mut added).await;
    append_all(response.headers_mut(), added);
    response
}

/// Move the response headers request hooks added out of the request, into `added`.
fn take_added_headers(head: &mut RequestHead, added: &mut HeaderMap) {
    append_all(added, std::mem::take(&mut head.response_headers));
}

/// Append every value of `from` to `to`, keeping what `to` has (`HeaderMap::extend` would
/// replace same-named headers).
fn append_all(to: &mut HeaderMap, from: HeaderMap) {
    if from.is_empty() {
        return;
    }
    if to.is_empty() {
        *to = from;
        return;
    }
    let mut name = None;
    for (next, value) in from {
        // `HeaderMap::into_iter` names each header once, before its first value.
        if next.is_some() {
            name = next;
        }
        if let Some(name) = &name {
            to.append(name.clone(), value);
        }
    }
}

/// Run the chain around one upstream exchange.
async fn exchange(
    listener: &ListenerState,
    table: &RouteTable,
    route: &Route,
    mut head: RequestHead,
    incoming: Incoming,
    info: RequestInfo,
    added: &mut HeaderMap,
) -> Response<ProxyBody> {
    let chain = &route.chain;
    let limits = &listener.limits;
    let mut leases = chain.leases(&head);

    if chain.request_headers {
        let outcome = chain
            .run(
                &mut leases,
                &info,
                Phase::RequestHeaders { head: &mut head },
            )
            .await;
        take_added_headers(&mut head, added);
        match outcome {
            Outcome::Continue => {}
            Outcome::Respond(r) => return local(r),
            Outcome::Failed(f) => return filter_failed(&f),
        }
    }

    let declared_len = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > limits.max_request_body_bytes) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "weft: request body exceeds the limit of {} bytes\n",
                limits.max_request_body_bytes
            ),
        );
    }

    let request_body = if chain.request_body {
        let limit = limits.max_buffered_body_bytes as u64;
        let collected = match body::Limited::new(incoming, limit).collect().await {
            Ok(c) => c,
            Err(e) if body::is_too_large(&*e) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("weft: request body exceeds the {limit} bytes a filter may buffer\n"),
                );
            }
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("weft: could not read the request body: {e}\n"),
                );
            }
        };
        let trailers = collected.trailers().cloned();
        let mut bytes = collected.to_bytes();
        let phase = Phase::RequestBody {
            head: &mut head,
            body: &mut bytes,
        };
        let outcome = chain.run(&mut leases, &info, phase).await;
        take_added_headers(&mut head, added);
        match outcome {
            Outcome::Continue => {}
            Outcome::Respond(r) => return local(r),
            Outcome::Failed(f) => return filter_failed(&f),
        }
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        body::with_trailers(bytes, trailers)
    } else {
        body::from_client(incoming, limits.max_request_body_bytes)
    };

    // Response hooks see the request as the request hooks left it.
    let wants_response = chain.response_headers || chain.response_body;
    let shared_head = wants_response.then(|| Arc::new(head.clone()));

    let upstream = match &head.upstream {
        Some(name) if **name != *route.upstream.name => match table.upstreams.get(&**name) {
            Some(chosen) => chosen,
            None => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("weft: a filter chose upstream {name:?}, which is not configured\n"),
                );
            }
        },
        _ => &route.upstream,
    };
    let timeout = route.timeout.unwrap_or(upstream.timeout);
    let request = match upstream_request(head, request_body, &info, upstream) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let downstream_version = request.version();
    let response =
        match tokio::time::timeout(timeout, upstream.send(request, downstream_version)).await {
            Err(_) => {
                return reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "weft: upstream \"{}\" timed out after {}\n",
                        upstream.name,
                        humantime::format_duration(timeout)
                    ),
                );
            }
            Ok(Err(e)) => return upstream_error(&upstream.name, &e, limits),
            Ok(Ok(r)) => r,
        };

    let (parts, upstream_body) = response.into_parts();
    let mut rhead = ResponseHead {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
    };
    hop::strip(&mut rhead.headers, false);
    let Some(shared_head) = shared_head else {
        return finish(rhead, upstream_body.map_err(Into::into).boxed_unsync());
    };

    if chain.response_headers {
        let phase = Phase::ResponseHeaders {
            request: &shared_head,
            head: &mut rhead,
        };
        let outcome = chain.run(&mut leases, &info, phase).await;
        match outcome {
            Outcome::Continue => {}
            Outcome::Respond(r) => return local(r),
            Outcome::Failed(f) => return filter_failed(&f),
        }
    }
    if !chain.response_body {
        return finish(rhead, upstream_body.map_err(Into::into).boxed_unsync());
    }
    let limit = limits.max_buffered_body_bytes as u64;
    let collected = match body::Limited::new(upstream_body, limit).collect().await {
        Ok(c) => c,
        Err(e) if body::is_too_large(&*e) => {
            return reply(
                StatusCode::BAD_GATEWAY,
                format!(
                    "weft: response body from upstream \"{}\" exceeds the {limit} bytes a filter may buffer\n",
                    upstream.name
                ),
            );
        }
        Err(e) => {
            return reply(
                StatusCode::BAD_GATEWAY,
                format!(
                    "weft: upstream \"{}\" failed while sending its body: {e}\n",
                    upstream.name
                ),
            );
        }
    };
    let trailers = collected.trailers().cloned();
    let mut bytes = collected.to_bytes();
    let phase = Phase::ResponseBody {
        request: &shared_head,
        head: &mut rhead,
        body: &mut bytes,
    };
    let outcome = chain.run(&mut leases, &info, phase).await;
    match outcome {
        Outcome::Continue => {}
        Outcome::Respond(r) => return local(r),
        Outcome::Failed(f) => return filter_failed(&f),
    }
    rhead
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    finish(rhead, body::with_trailers(bytes, trailers))
}

fn finish(head: ResponseHead, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// Turn the filtered request head into the request sent upstream.
#[allow(clippy::result_large_err)]
fn upstream_request(
    mut head: RequestHead,
    body: ProxyBody,
    info: &RequestInfo,
    upstream: &Upstream,
) -> Result<Request<ProxyBody>, Response<ProxyBody>> {
    // Hop-by-hop fields were removed as the request arrived, and filters cannot add any.
    if let Some(client) = info.client {
        let ip = client.ip().to_string();
        let value = match head
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::try_from(value) {
            head.headers.insert("x-forwarded-for", v);
        }
    }
    if !head.headers.contains_key("x-forwarded-proto") {
        head.headers
            .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    // The request keeps its authority (Host / :authority); the connector decides where to go.
    let authority = head
        .authority()
        .map(str::to_owned)
        .unwrap_or_else(|| upstream.name.to_string());
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(head.path_and_query())
        .build()
        .map_err(|_| {
            reply(
                StatusCode::BAD_REQUEST,
                format!("weft: invalid request authority {authority:?}\n"),
            )
        })?;
    let mut request = Request::new(body);
    *request.method_mut() = head.method;
    *request.uri_mut() = uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    Ok(request)
}

fn upstream_error(
    name: &str,
    error: &hyper_util::client::legacy::Error,
    limits: &Limits,
) -> Response<ProxyBody> {
    if body::is_too_large(error) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "weft: request body exceeds the limit of {} bytes\n",
                limits.max_request_body_bytes
            ),
        );
    }
    if body::is_client_error(error) {
        tracing::debug!(upstream = name, error = %error_chain(error), "the client's request body failed");
        return reply(
            StatusCode::BAD_REQUEST,
            "weft: could not read the request body\n".to_owned(),
        );
    }
    if error.is_connect() {
        tracing::warn!(upstream = name, error = %error_chain(error), "upstream connect failed");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("weft: upstream \"{name}\" unavailable: connection failed\n"),
        );
    }
    tracing::warn!(upstream = name, error = %error_chain(error), "upstream request failed");
    reply(
        StatusCode::BAD_GATEWAY,
        format!("weft: upstream \"{name}\" failed: invalid or interrupted response\n"),
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
