//! A whole chain in a real proxy: the proxy and an upstream that records what reaches it, both
//! in-process on `127.0.0.1:0`, and a client to send requests through them. For end-to-end
//! tests of several filters together, over real HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use weft_proxy::config::Config;
use weft_proxy::{Proxy, RunningProxy};

/// One filter of the chain, as under `filters:` in the proxy's config (`name`, `module`,
/// `config`).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct ChainFilter {
    pub name: String,
    /// The component's path.
    pub wasm: String,
    pub config: serde_json::Value,
}

impl ChainFilter {
    /// Filter `name` from the component at `wasm`, configured with `config`.
    pub fn new(name: &str, wasm: &str, config: serde_json::Value) -> Self {
        Self {
            name: name.to_owned(),
            wasm: wasm.to_owned(),
            config,
        }
    }
}

/// A request as the upstream received it.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Seen {
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// Its headers, after the chain.
    pub headers: HeaderMap,
}

/// What the client got.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// A running proxy with `filters` on its `inbound` listener in front of a recording upstream.
pub struct ChainHarness {
    proxy: Option<RunningProxy>,
    upstream: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ChainHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainHarness")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// Why a chain did not start.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The test upstream could not listen.
    #[error("cannot start the test upstream: {0}")]
    Upstream(std::io::Error),
    /// The generated config was refused.
    #[error("{0}")]
    Config(#[from] weft_proxy::config::ConfigError),
    /// The proxy refused to start (a filter's `configure` said no, a module did not compile).
    #[error("{0}")]
    Proxy(#[from] weft_proxy::Error),
}

impl ChainHarness {
    /// Start the upstream and a proxy running `filters` in order on every request. Call from
    /// a tokio runtime (`#[tokio::test]`).
    pub async fn start(filters: &[ChainFilter]) -> Result<Self, ChainError> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = start_upstream(seen.clone())
            .await
            .map_err(ChainError::Upstream)?;
        let filters: Vec<serde_json::Value> = filters
            .iter()
            .map(|f| serde_json::json!({ "name": f.name, "module": f.wasm, "config": f.config }))
            .collect();
        // YAML is a superset of JSON: the filters go in as JSON, exactly as given.
        let yaml = format!(
            "admin: {{ address: 127.0.0.1:0 }}\n\
             listeners:\n\
             \x20 - name: inbound\n\
             \x20   address: 127.0.0.1:0\n\
             \x20   filters: {filters}\n\
             \x20   routes:\n\
             \x20     - {{ name: default, match: {{ path: {{ prefix: / }} }}, upstream: backend }}\n\
             upstreams:\n\
             \x20 - {{ name: backend, endpoints: [\"{upstream}\"] }}\n",
            filters = serde_json::Value::Array(filters),
        );
        let config = Config::from_yaml(&yaml, Path::new("<chain harness>"))?;
        let proxy = Proxy::start(config).await?;
        Ok(Self {
            proxy: Some(proxy),
            upstream,
            seen,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The proxy's listener.
    pub fn addr(&self) -> SocketAddr {
        self.proxy
            .as_ref()
            .and_then(|p| p.listener_addr("inbound"))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The proxy's admin address (`/metrics`, `/ready`).
    pub fn admin(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().and_then(RunningProxy::admin_addr)
    }

    /// Send `GET path` with `headers` through the proxy.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, ClientError> {
        let mut request = Request::get(format!("http://{}{path}", self.addr()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ClientError(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError(e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The requests that reached the upstream so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Shut the proxy down gracefully.
    pub async fn shutdown(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown().await;
        }
    }
}

/// A request through the chain failed below HTTP (connection refused, reset).
#[derive(Debug, thiserror::Error)]
#[error("request through the chain failed: {0}")]
pub struct ClientError(String);

/// An HTTP/1.1 upstream on 127.0.0.1:0 that records each request and answers `200 ok`.
async fn start_upstream(seen: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Seen {
                                method: request.method().clone(),
                                path: request
                                    .uri()
                                    .path_and_query()
                                    .map_or_else(|| "/".to_owned(), ToString::to_string),
                                headers: request.headers().clone(),
                            });
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
