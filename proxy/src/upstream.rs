//! Upstream clusters: named sets of endpoints with pooled HTTP/1.1 and HTTP/2 connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use weft_identity::tls::MeshTls;
use weft_runtime::error_chain;

use crate::body::{self, ProxyBody};
use crate::config::{Limits, UpstreamConfig, UpstreamProtocol, UpstreamTls};
use crate::mesh::{self, Outbound};
use crate::respond::Refusal;

/// Connects to one fixed endpoint whatever the request's authority says.
///
/// Requests keep their original `Host`/`:authority` (as Envoy does by default), so the URI
/// the client sees cannot be what decides where to connect.
///
/// With mesh mTLS the connector also runs the handshake (within the same connect timeout)
/// and checks the upstream's identity, so a pooled connection is always an authenticated one.
#[derive(Clone, Debug)]
pub(crate) struct FixedConnector {
    endpoint: Arc<str>,
    connect_timeout: Duration,
    tls: Option<Outbound>,
}

impl tower_service::Service<http::Uri> for FixedConnector {
    type Response = TokioIo<mesh::Upstream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let endpoint = self.endpoint.clone();
        let timeout = self.connect_timeout;
        let tls = self.tls.clone();
        Box::pin(async move {
            let timed_out =
                |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
            let deadline = tokio::time::Instant::now() + timeout;
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&*endpoint))
                .await
                .map_err(timed_out)??;
            stream.set_nodelay(true)?;
            let stream = match tls {
                None => mesh::Upstream::Plain(stream),
                Some(tls) => tokio::time::timeout_at(deadline, tls.connect(stream))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the mTLS handshake did not finish within the connect timeout",
                        )
                    })??,
            };
            Ok(TokioIo::new(stream))
        })
    }
}

/// One endpoint's connection pools.
#[derive(Debug)]
struct Endpoint {
    http1: Client<FixedConnector, ProxyBody>,
    http2: Client<FixedConnector, ProxyBody>,
}

/// A named upstream cluster, load-balanced round robin.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: Arc<str>,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    protocol: UpstreamProtocol,
    pub(crate) timeout: Duration,
}

impl Upstream {
    /// `mesh` is the proxy's mTLS, used when the upstream has `tls: { mode: mesh }`.
    pub(crate) fn new(
        config: &UpstreamConfig,
        mesh: &MeshTls,
        handshakes: &mesh::Handshakes,
    ) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let connector = |h2: bool| FixedConnector {
                    endpoint: e.as_str().into(),
                    connect_timeout: config.connect_timeout,
                    tls: match &config.tls {
                        UpstreamTls::Disabled => None,
                        UpstreamTls::Mesh { identity } => Some(Outbound::new(
                            mesh,
                            h2,
                            e,
                            identity.as_ref(),
                            handshakes.clone(),
                        )),
                    },
                };
                let http1 = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_timer(TokioTimer::new())
                    .build(connector(false));
                let http2 = Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .build(connector(true));
                Endpoint { http1, http2 }
            })
            .collect();
        Self {
            name: config.name.as_str().into(),
            endpoints,
            next: AtomicUsize::new(0),
            protocol: config.protocol,
            timeout: config.timeout,
        }
    }

    /// Send `request` to the next endpoint. `downstream` is the client's HTTP version, which
    /// `protocol: auto` follows.
    pub(crate) fn send(
        &self,
        mut request: http::Request<ProxyBody>,
        downstream: http::Version,
    ) -> hyper_util::client::legacy::ResponseFuture {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let endpoint = &self.endpoints[i];
        let use_h2 = match self.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Auto => downstream == http::Version::HTTP_2,
        };
        // One authority, decided when the request arrived, travels in the URI: `:authority`
        // for HTTP/2, and a `Host` that equals it for HTTP/1.1.
        if use_h2 {
            *request.version_mut() = http::Version::HTTP_2;
            request.headers_mut().remove(http::header::HOST);
            endpoint.http2.request(request)
        } else {
            *request.version_mut() = http::Version::HTTP_11;
            if !request.headers().contains_key(http::header::HOST)
                && let Some(authority) = request.uri().authority()
                && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
            {
                request.headers_mut().insert(http::header::HOST, host);
            }
            endpoint.http1.request(request)
        }
    }
}

/// What the client is told when sending to upstream `name` failed, and who caused it: the
/// client's body (over its limit, or broken off) or the upstream (no connection, a bad or
/// interrupted response). Upstream failures are logged here, with the whole error chain.
pub(crate) fn refusal(
    name: &Arc<str>,
    error: &hyper_util::client::legacy::Error,
    limits: &Limits,
) -> Refusal {
    if body::is_too_large(error) {
        return Refusal::BodyTooLarge {
            limit: limits.max_request_body_bytes,
        };
    }
    if body::is_client_error(error) {
        tracing::debug!(upstream = &**name, error = %error_chain(error), "the client's request body failed");
        return Refusal::ClientBody { detail: None };
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
