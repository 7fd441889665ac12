//! HTTP clients for talking to the proxy (or straight to an upstream): HTTP/1.1 and h2c, with
//! every exchange bounded by [`REQUEST_TIMEOUT`] so a hanging proxy fails a test instead of
//! hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::BoxError;
use crate::upstream::Seen;

/// Upper bound for one whole exchange (connect, send, read the full reply). Generous: it only
/// exists so that "the proxy hung" fails with a message rather than hanging the test run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body type of the test clients.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The test clients' type: a hyper-util legacy client over plain TCP.
pub type HttpClient = Client<HttpConnector, Body>;

/// Which protocol a client speaks to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge over cleartext TCP.
    H2c,
}

impl Proto {
    /// Both protocols, for tests that must hold for each.
    pub const ALL: [Proto; 2] = [Proto::Http1, Proto::H2c];

    /// A new client speaking this protocol.
    pub fn client(self) -> HttpClient {
        match self {
            Proto::Http1 => http1_client(),
            Proto::H2c => h2c_client(),
        }
    }

    /// How the upstream describes this version in [`Seen::version`].
    pub fn version_name(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::H2c => "HTTP/2.0",
        }
    }

    /// The [`http::Version`] of responses on this protocol.
    pub fn version(self) -> Version {
        match self {
            Proto::Http1 => Version::HTTP_11,
            Proto::H2c => Version::HTTP_2,
        }
    }
}

/// A client speaking HTTP/1.1.
pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A client speaking HTTP/2 with prior knowledge (h2c) on every connection.
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A request body holding `bytes`.
pub fn body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty request body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Builds a request for `http://<addr><path>` with extra `headers`.
pub fn request(
    method: Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(body)
        .expect("test request: valid method, URI and headers")
}

/// A complete response, body read to the end.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The response's HTTP version.
    pub version: Version,
}

impl Reply {
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of header `name` that is text, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// What the upstream received, parsed from its JSON description (see [`crate::Upstream`]).
    /// Fails, showing the reply, when the body is not such a description (a proxy error page,
    /// say).
    pub fn seen(&self) -> anyhow::Result<Seen> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "expected the upstream's JSON description, got {} with body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Reads a whole response into a [`Reply`].
    pub async fn read(response: Response<Incoming>) -> anyhow::Result<Reply> {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }
}

/// Sends `req` with `client` and reads the whole reply, within [`REQUEST_TIMEOUT`].
pub async fn send(client: &HttpClient, req: Request<Body>) -> anyhow::Result<Reply> {
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async {
        let response = client.request(req).await?;
        Reply::read(response).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{what}: no complete reply within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("{what} failed"))
}

/// `GET <path>` on `addr` over HTTP/1.1 with extra `headers`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
    get_with(Proto::Http1, addr, path, headers).await
}

/// `GET <path>` on `addr` over h2c with extra `headers`.
pub async fn get_h2c(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    get_with(Proto::H2c, addr, path, headers).await
}

/// `GET <path>` on `addr` over `proto` with extra `headers`.
pub async fn get_with(
    proto: Proto,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let req = request(Method::GET, addr, path, headers, empty());
    send(&proto.client(), req).await
}

/// `POST <path>` on `addr` over `proto` with extra `headers` and `body`.
pub async fn post_with(
    proto: Proto,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body_bytes: impl Into<Bytes>,
) -> anyhow::Result<Reply> {
    let req = request(Method::POST, addr, path, headers, body(body_bytes));
    send(&proto.client(), req).await
}

/// Opens one h2c connection to `addr` and sends `req` exactly as built: its URI's authority
/// becomes `:authority`, so a test can send an authority other than the address it connects to.
pub async fn send_h2c_direct(addr: SocketAddr, req: Request<Body>) -> anyhow::Result<Reply> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        let response = sender.send_request(req).await?;
        Reply::read(response).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("h2c exchange with {addr}: no reply within {REQUEST_TIMEOUT:?}"))?
}

/// The next data chunk of a streaming body: `None` at its end, an error if none arrives within
/// [`REQUEST_TIMEOUT`] (the proxy buffered the body, or hung).
pub async fn next_chunk(body: &mut Incoming) -> anyhow::Result<Option<Bytes>> {
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .with_context(|| format!("no body chunk within {REQUEST_TIMEOUT:?}"))?
}
