//! A real HTTP authorization service on `127.0.0.1:0`, for the outbound-call tests (the
//! ext-authz filter, and filters that call out). It decides by the `authorization` header:
//!
//! - `Bearer good`: 200 with `x-user-id: alice`, `x-auth-tier: gold` and `x-other: no`;
//! - `Bearer hold`: waits until [`AuthService::release`], then as `good`;
//! - `Bearer slow`: waits two seconds, then as `good`;
//! - `Bearer big`: 200 with a 1 MiB body;
//! - anything else, or none: 403 with `www-authenticate: Bearer realm="weft"` and the body
//!   `denied by policy\n`.
//!
//! It records each check's path and headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One check the service received.
#[derive(Debug, Clone)]
pub struct Check {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
}

#[derive(Debug)]
struct State {
    checks: Mutex<Vec<Check>>,
    waiting: AtomicUsize,
    release: watch::Sender<bool>,
}

/// See the module docs.
#[derive(Debug)]
pub struct AuthService {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl AuthService {
    /// Binds `127.0.0.1:0` and serves HTTP/1.1 and h2c.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            checks: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            release: watch::Sender::new(false),
        });
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| decide(state.clone(), req));
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The checks received so far.
    pub fn checks(&self) -> Vec<Check> {
        weft_runtime::lock(&self.state.checks).clone()
    }

    /// How many `Bearer hold` checks are waiting for [`AuthService::release`].
    pub fn waiting(&self) -> usize {
        self.state.waiting.load(Ordering::SeqCst)
    }

    /// Answer every held check (and those to come).
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.release();
        self.accept.abort();
    }
}

fn allowed() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    let headers = response.headers_mut();
    headers.insert("x-user-id", "alice".parse().expect("valid"));
    headers.insert("x-auth-tier", "gold".parse().expect("valid"));
    headers.insert("x-other", "no".parse().expect("valid"));
    response
}

async fn decide(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    weft_runtime::lock(&state.checks).push(Check {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        headers: request.headers().clone(),
    });
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok(match token.as_str() {
        "Bearer good" => allowed(),
        "Bearer hold" => {
            state.waiting.fetch_add(1, Ordering::SeqCst);
            let mut release = state.release.subscribe();
            let _ = release.wait_for(|released| *released).await;
            state.waiting.fetch_sub(1, Ordering::SeqCst);
            allowed()
        }
        "Bearer slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            allowed()
        }
        "Bearer big" => Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20]))),
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"denied by policy\n")));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response.headers_mut().insert(
                "www-authenticate",
                "Bearer realm=\"weft\"".parse().expect("valid"),
            );
            response
        }
    })
}
