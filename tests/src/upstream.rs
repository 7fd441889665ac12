//! Servers for the proxy to forward to: a real HTTP/1.1 + h2c server that describes what it
//! received, and misbehaving ones (nothing listening, never answering, answering garbage) for
//! the proxy's error paths.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::BoxError;

type ResBody = BoxBody<Bytes, BoxError>;

/// Pause between two chunks of a `/stream/<n>` response.
pub const STREAM_CHUNK_DELAY: Duration = Duration::from_millis(5);

/// A real upstream on `127.0.0.1:0` serving HTTP/1.1 and h2c on the same port.
///
/// It answers every path with a JSON description of the request it received ([`Seen`]),
/// except:
/// - `/status/<code>`: the same description, with status `<code>`;
/// - `/slow/<ms>`: waits `<ms>` milliseconds, then describes;
/// - `/stream/<n>`: streams `n` chunks `chunk <i>\n`, [`STREAM_CHUNK_DELAY`] apart. With a
///   `?hold` query it sends chunk 0 and then waits for [`Upstream::release_streams`], so a test
///   can prove chunk 0 crossed the proxy while the rest was not yet sent;
/// - `/echo`: streams the request body back as it arrives;
/// - `/with-headers?<name>=<value>&...`: describes, and adds each pair as a response header
///   (hop-by-hop ones included, to test that the proxy drops them).
///
/// The server stops accepting when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    requests: AtomicUsize,
    connections: AtomicUsize,
    open: AtomicUsize,
    streams_finished: AtomicUsize,
    release: watch::Sender<bool>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and starts serving; the server is ready when this returns.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            streams_finished: AtomicUsize::new(0),
            release: watch::Sender::new(false),
        });
        let accept = spawn_accept(listener, {
            let state = state.clone();
            move |stream| {
                let state = state.clone();
                state.connections.fetch_add(1, Ordering::SeqCst);
                state.open.fetch_add(1, Ordering::SeqCst);
                async move {
                    let service = service_fn({
                        let state = state.clone();
                        move |req| handle(state.clone(), req)
                    });
                    // Errors here are the client's (a proxy resetting a stream, say): nothing
                    // for the upstream to report.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    state.open.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Where the upstream listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests (on any path) have reached the upstream so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many connections the upstream has accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many of those are still open (the client has not closed them).
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// How many `/stream/<n>` responses have handed their last chunk to the connection.
    pub fn streams_finished(&self) -> usize {
        self.state.streams_finished.load(Ordering::SeqCst)
    }

    /// Lets every held `/stream/<n>?hold` response (current and future) send its remaining chunks.
    pub fn release_streams(&self) {
        self.state.release.send_replace(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What the upstream received, as it describes it in its JSON reply.
#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    /// The request method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The URI's authority (HTTP/2) or else the `host` header, if any.
    pub authority: Option<String>,
    /// Every header field in order, names lower-case (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    /// The request body (decoded lossily as UTF-8).
    pub body: String,
}

impl Seen {
    /// The first value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every value of header `name` (lower-case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether header `name` (lower-case) arrived at all.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();

    let response = if let Some(code) = path.strip_prefix("/status/") {
        match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => {
                let mut response = describe(req).await;
                *response.status_mut() = status;
                response
            }
            None => text(
                StatusCode::BAD_REQUEST,
                "upstream: bad status code in path\n",
            ),
        }
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                describe(req).await
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "upstream: bad delay in path\n"),
        }
    } else if let Some(n) = path.strip_prefix("/stream/") {
        match n.parse::<usize>() {
            Ok(n) => {
                let hold = query.split('&').any(|pair| pair == "hold");
                stream(state, n, hold)
            }
            Err(_) => text(
                StatusCode::BAD_REQUEST,
                "upstream: bad chunk count in path\n",
            ),
        }
    } else if path == "/echo" {
        Response::new(req.into_body().map_err(BoxError::from).boxed())
    } else if path == "/with-headers" {
        let mut response = describe(req).await;
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
    } else {
        describe(req).await
    };
    Ok(response)
}

/// A 200 response whose JSON body describes `req` (see [`Seen`]).
async fn describe(req: Request<Incoming>) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("upstream: cannot read request body: {e}\n"),
            );
        }
    };
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), lossy(value.as_bytes())))
        .collect();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| parts.headers.get(header::HOST).map(|h| lossy(h.as_bytes())));
    let description = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "version": format!("{:?}", parts.version),
        "authority": authority,
        "headers": headers,
        "body": lossy(&body),
    });
    let mut response = Response::new(full(description.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn stream(state: Arc<State>, n: usize, hold: bool) -> Response<ResBody> {
    // Capacity 1: a chunk is only produced once the previous one was taken by the connection.
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let mut released = state.release.subscribe();
    tokio::spawn(async move {
        for i in 0..n {
            if i == 1 && hold {
                // The sender lives in `state`, which this task holds: `wait_for` cannot fail.
                let _ = released.wait_for(|released| *released).await;
            } else if i > 0 {
                tokio::time::sleep(STREAM_CHUNK_DELAY).await;
            }
            let chunk = Frame::data(Bytes::from(format!("chunk {i}\n")));
            if tx.send(Ok(chunk)).await.is_err() {
                return; // The client went away.
            }
        }
        state.streams_finished.fetch_add(1, Ordering::SeqCst);
    });
    let mut response = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn text(status: StatusCode, body: &str) -> Response<ResBody> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = status;
    response
}

fn full(body: String) -> ResBody {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed()
}

/// Accepts connections on `listener` until the returned task is aborted, handing each to its
/// own task.
pub(crate) fn spawn_accept<F, Fut>(listener: TcpListener, on_connection: F) -> JoinHandle<()>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Like a real server: small responses go out at once, not after Nagle's wait.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(on_connection(stream));
                }
                // Out of file descriptors, say: back off rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

/// An address where nothing listens (a port that was bound and released), for "connection
/// refused" cases.
pub fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address of a bound listener")
    // The listener is dropped here: connecting to the port is now refused.
}

/// A TCP server that accepts connections and never answers (nor closes them): the upstream of
/// a timeout.
#[derive(Debug)]
pub struct SilentUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl SilentUpstream {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let accept = spawn_accept(listener, {
            let accepted = accepted.clone();
            move |mut stream| {
                accepted.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Read (and ignore) whatever comes until the peer closes, never answering.
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                }
            }
        });
        Ok(Self {
            addr,
            accepted,
            accept,
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What [`GarbageUpstream`] answers to anything.
pub const GARBAGE: &[u8] = b"this is not HTTP at all\r\n\r\n";

/// A TCP server that answers every connection with [`GARBAGE`] and closes it: the upstream of a
/// bad gateway.
#[derive(Debug)]
pub struct GarbageUpstream {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl GarbageUpstream {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = spawn_accept(listener, |mut stream| async move {
            // Wait for the request to start so the answer cannot race the proxy's write.
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(GARBAGE).await;
            let _ = stream.shutdown().await;
        });
        Ok(Self { addr, accept })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for GarbageUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
