//! An upstream that misbehaves on purpose, for the proxy's load balancing and resilience:
//! answers with a chosen status, fails or resets every other request, hangs, is slow, or
//! answers a gRPC error, switchable while it runs; it counts what reached it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::BoxError;
use crate::upstream::spawn_accept;

/// The response header naming the [`ScriptedUpstream`] that answered (its address).
pub const UPSTREAM_HEADER: &str = "x-upstream";

/// The path answered by the health status ([`ScriptedUpstream::set_healthy`]) whatever the
/// [`Behaviour`]; requests to it are counted apart ([`ScriptedUpstream::health_checks`]).
pub const HEALTH_PATH: &str = "/healthz";

/// What a [`ScriptedUpstream`] does with each request (other than [`HEALTH_PATH`]). It always
/// reads the whole request body first, so a proxy's request has been delivered in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200.
    Ok,
    /// This status, always.
    Status(u16),
    /// This status for the 1st, 3rd, 5th... request since the behaviour was set; 200 for the
    /// others.
    FailEveryOther(u16),
    /// The 1st, 3rd, 5th... request since the behaviour was set gets no response: its HTTP/1.1
    /// connection is closed, its HTTP/2 stream reset (`INTERNAL_ERROR`). 200 for the others.
    ResetEveryOther,
    /// Every request gets no response, as in [`Behaviour::ResetEveryOther`].
    Reset,
    /// Holds each request without answering until [`ScriptedUpstream::release_held`], then
    /// answers 200.
    Hang,
    /// Waits this long, then answers 200.
    Delay(Duration),
    /// A gRPC trailers-only response: HTTP 200 with `grpc-status: <code>` in the head and no
    /// body.
    Grpc(u32),
}

/// A misbehaving HTTP/1.1 + h2c server on `127.0.0.1:0` (see [`Behaviour`]).
///
/// Every response carries [`UPSTREAM_HEADER`] with the server's address ([`Self::name`]) and
/// has a short text body naming it and the status. Stops accepting when dropped.
#[derive(Debug)]
pub struct ScriptedUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    name: String,
    behaviour: Mutex<Behaviour>,
    /// Requests since the behaviour was last set (for the "every other" behaviours).
    turn: AtomicUsize,
    requests: AtomicUsize,
    successes: AtomicUsize,
    in_flight: AtomicUsize,
    max_concurrent: AtomicUsize,
    connections: AtomicUsize,
    healthy: AtomicBool,
    health_checks: AtomicUsize,
    /// Bumped by `release_held`: held requests wait for a change.
    release: watch::Sender<u64>,
}

impl ScriptedUpstream {
    /// Binds `127.0.0.1:0` and starts serving with `behaviour`, healthy; ready when this
    /// returns.
    pub async fn start(behaviour: Behaviour) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: addr.to_string(),
            behaviour: Mutex::new(behaviour),
            turn: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            health_checks: AtomicUsize::new(0),
            release: watch::Sender::new(0),
        });
        let accept = spawn_accept(listener, {
            let state = state.clone();
            move |stream| {
                let state = state.clone();
                state.connections.fetch_add(1, Ordering::SeqCst);
                async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    // A service error is how a request is reset; the rest are the client's.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value of [`UPSTREAM_HEADER`] in its responses: its address.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Switches to `behaviour` for the requests that arrive from now on; the "every other"
    /// count starts again.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let mut current = self
            .state
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *current = behaviour;
        self.state.turn.store(0, Ordering::SeqCst);
    }

    /// Whether `GET /healthz` answers 200 (`true`, the default) or 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Lets every request held by [`Behaviour::Hang`] so far answer 200 (later ones are held
    /// again).
    pub fn release_held(&self) {
        self.state
            .release
            .send_modify(|generation| *generation += 1);
    }

    /// Requests received so far, whatever became of them ([`HEALTH_PATH`] aside).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with a 2xx status (gRPC trailers-only responses aside).
    pub fn successes(&self) -> usize {
        self.state.successes.load(Ordering::SeqCst)
    }

    /// Requests being handled right now ([`HEALTH_PATH`] aside).
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests it ever handled at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_concurrent.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests to [`HEALTH_PATH`] so far.
    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<State>);

impl InFlight {
    fn enter(state: &Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_concurrent.fetch_max(now, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type ResBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<ResBody>, BoxError> {
    if req.uri().path() == HEALTH_PATH {
        state.health_checks.fetch_add(1, Ordering::SeqCst);
        let status = if state.healthy.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Ok(reply(&state, status));
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&state);
    let behaviour = state
        .behaviour
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let failing_turn = state.turn.fetch_add(1, Ordering::SeqCst).is_multiple_of(2);
    // Subscribed before anything is awaited: a release from now on lets this request go.
    let mut released = state.release.subscribe();
    req.into_body().collect().await?;

    let status = match behaviour {
        Behaviour::Ok => StatusCode::OK,
        Behaviour::Status(code) => StatusCode::from_u16(code)?,
        Behaviour::FailEveryOther(code) if failing_turn => StatusCode::from_u16(code)?,
        Behaviour::FailEveryOther(_) => StatusCode::OK,
        Behaviour::ResetEveryOther if failing_turn => return Err("scripted reset".into()),
        Behaviour::ResetEveryOther => StatusCode::OK,
        Behaviour::Reset => return Err("scripted reset".into()),
        Behaviour::Hang => {
            // The sender lives in `state`, which this request holds: this cannot fail.
            let _ = released.changed().await;
            StatusCode::OK
        }
        Behaviour::Delay(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        Behaviour::Grpc(code) => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(code));
            headers.insert("grpc-message", HeaderValue::from_static("scripted"));
            headers.insert(UPSTREAM_HEADER, HeaderValue::from_str(&state.name)?);
            return Ok(response);
        }
    };
    if status.is_success() {
        state.successes.fetch_add(1, Ordering::SeqCst);
    }
    Ok(reply(&state, status))
}

fn reply(state: &State, status: StatusCode) -> Response<ResBody> {
    let body = format!("{} answered {}\n", state.name, status.as_u16());
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    if let Ok(name) = HeaderValue::from_str(&state.name) {
        response.headers_mut().insert(UPSTREAM_HEADER, name);
    }
    response
}

/// Polls `check` every 10 ms until it gives `Some`, and returns that; fails after `limit`
/// saying what was awaited and what `check` last saw (`describe`).
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(found) => return Ok(found),
            Err(last) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("waited {limit:?} for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A proxy config with an admin address, one `inbound` listener with one catch-all route
/// `app`, and one upstream `app`:
/// - `route`: the route's lines after its `match` (`upstream: app`, `timeout: 1s`, a `split`
///   list...), each indented as a key of the route (8 spaces added);
/// - `endpoints`: items of the upstream's `endpoints` list (`"127.0.0.1:1234"` or
///   `{address: ..., weight: 3}`);
/// - `upstream`: more keys of the upstream (`retries: {...}`), 4 spaces added.
pub fn one_upstream_config(route: &[&str], endpoints: &[String], upstream: &[&str]) -> String {
    let mut yaml = String::from(
        "admin: { address: 127.0.0.1:0 }\n\
         listeners:\n  \
           - name: inbound\n    \
             address: 127.0.0.1:0\n    \
             direction: inbound\n    \
             filters: []\n    \
             routes:\n      \
               - name: app\n        \
                 match: { path: { prefix: / } }\n",
    );
    for line in route {
        yaml.push_str(&format!("        {line}\n"));
    }
    yaml.push_str("upstreams:\n  - name: app\n    endpoints:\n");
    for endpoint in endpoints {
        yaml.push_str(&format!("      - {endpoint}\n"));
    }
    for line in upstream {
        yaml.push_str(&format!("    {line}\n"));
    }
    yaml
}

/// Sends `total` `GET /` requests with `headers` to `addr` over HTTP/1.1, `concurrency` at a
/// time, and counts the answers by [`UPSTREAM_HEADER`]. Fails on any answer but a 200.
pub async fn tally(
    addr: SocketAddr,
    total: usize,
    concurrency: usize,
    headers: &[(&str, &str)],
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let client = crate::http1_client();
    let next = Arc::new(AtomicUsize::new(0));
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let workers = (0..concurrency.max(1)).map(|_| {
        let (client, next, headers) = (client.clone(), next.clone(), headers.clone());
        tokio::spawn(async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut seen = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < total {
                let req = crate::request(http::Method::GET, addr, "/", &headers, crate::empty());
                let reply = crate::send(&client, req).await?;
                anyhow::ensure!(
                    reply.status == StatusCode::OK,
                    "expected 200, got {}: {}",
                    reply.status,
                    reply.text()
                );
                seen.push(reply.header(UPSTREAM_HEADER).unwrap_or("<none>").to_owned());
            }
            anyhow::Ok(seen)
        })
    });
    let mut counts = std::collections::BTreeMap::new();
    for worker in futures_util::future::join_all(workers).await {
        for name in worker?? {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    Ok(counts)
}
