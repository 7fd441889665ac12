//! Accepting connections: the connection cap, the mTLS step of `tls: strict | permissive`
//! listeners ([`crate::mesh`]), protocol detection (ALPN when TLS chose it), HTTP/1.1 and
//! HTTP/2 options, the head and idle timeouts, the premature-reset guard, and graceful drain.
//!
//! Every connection is watched by one timer in its own task. What the timer enforces depends
//! on what the connection is doing, which [`ConnState`] tracks with a few atomics:
//! - no request in flight and no byte since the last response: the idle timeout;
//! - bytes of a request head arriving (or the connection just accepted: protocol detection
//!   and the HTTP/2 preface count): the request-head timeout;
//! - requests in flight: nothing here (the route's timeouts apply to them).
//!
//! hyper's own `header_read_timeout` is off: it starts when a keep-alive connection goes idle,
//! so it cannot tell an idle client from a slow one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::config::Limits;
use crate::exchange::handle;
use crate::mesh::Downstream;
use crate::route::ListenerState;

/// How long shutdown waits for in-flight requests.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection closed for abuse or a timeout may take to say goodbye (GOAWAY,
/// in-flight responses) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the proxy closed a connection itself; the `reason` label of
/// `weft_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Over `max_connections`: closed as soon as accepted.
    Overflow,
    /// No complete request head within `request_head_timeout`.
    HeadTimeout,
    /// No request for `idle_timeout`.
    IdleTimeout,
    /// The client reset most of its HTTP/2 streams before their response.
    PrematureResets,
}

impl CloseReason {
    /// Every reason's label, in declaration order (the order of the metric handles).
    pub(crate) const LABELS: [&'static str; 4] = [
        CloseReason::Overflow.as_str(),
        CloseReason::HeadTimeout.as_str(),
        CloseReason::IdleTimeout.as_str(),
        CloseReason::PrematureResets.as_str(),
    ];

    /// The metric label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Overflow => "overflow",
            CloseReason::HeadTimeout => "head_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::PrematureResets => "premature_resets",
        }
    }
}

/// Accept connections until shutdown, then drain them.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ListenerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = &state.limits;
    // The semaphore counts live connections; draining is acquiring every permit back.
    let max = limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_request_header_bytes.max(8192));
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    let builders = Arc::new((h1, h2));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = &*state.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Over the cap: close at once, so the client learns now rather than
                    // after a timeout, and a slot that frees serves the next one.
                    state.connections.closed_as(CloseReason::Overflow as usize);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let builders = builders.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    state.connections.opened();
                    serve_connection(stream, client, &state, &builders, shutdown).await;
                    state.connections.ended();
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = &*state.name,
            "in-flight requests did not finish before the drain deadline"
        );
    }
}

/// The first bytes of an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Read until the bytes tell HTTP/2's preface from anything else. The bytes read are given
/// back to the connection through [`ConnIo`].
async fn detect(stream: &mut Downstream) -> std::io::Result<Option<(Protocol, Bytes)>> {
    let mut buf = vec![0; 1024];
    let mut n = 0;
    loop {
        let read = stream.read(&mut buf[n..]).await?;
        if read == 0 {
            return Ok(None);
        }
        n += read;
        let common = n.min(H2_PREFACE.len());
        if buf[..common] != H2_PREFACE[..common] {
            buf.truncate(n);
            return Ok(Some((Protocol::Http1, buf.into())));
        }
        if n >= H2_PREFACE.len() {
            buf.truncate(n);
            return Ok(Some((Protocol::Http2, buf.into())));
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    client: SocketAddr,
    state: &Arc<ListenerState>,
    builders: &(http1::Builder, http2::Builder<TokioExecutor>),
    shutdown: watch::Receiver<bool>,
) {
    let limits = &state.limits;
    let conn = Arc::new(ConnState::new(limits));
    // The TLS step and protocol detection share the head timeout.
    let deadline = Instant::now() + limits.request_head_timeout;
    let (mut stream, peer, alpn_h2) = match &state.inbound_tls {
        None => (Downstream::Plain(stream), None, None),
        Some(tls) => {
            let timeout = limits.request_head_timeout;
            match tls.accept(stream, client, &state.name, timeout).await {
                Some(accepted) => (accepted.stream, accepted.peer, accepted.alpn_h2),
                None => return,
            }
        }
    };
    let detected = match alpn_h2 {
        // ALPN settled it; hyper refuses a client that then speaks the other protocol.
        Some(true) => Ok(Ok(Some((Protocol::Http2, Bytes::new())))),
        Some(false) => Ok(Ok(Some((Protocol::Http1, Bytes::new())))),
        None => tokio::time::timeout_at(deadline, detect(&mut stream)).await,
    };
    let (protocol, prefix) = match detected {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(client = %client, error = %e, "connection failed before its first request");
            return;
        }
        Err(_) => {
            state
                .connections
                .closed_as(CloseReason::HeadTimeout as usize);
            return;
        }
    };
    conn.http2
        .store(protocol == Protocol::Http2, Ordering::Relaxed);
    let io = TokioIo::new(ConnIo {
        prefix,
        inner: stream,
        conn: conn.clone(),
    });
    let service = {
        let state = state.clone();
        let conn = conn.clone();
        service_fn(move |request| {
            let guard = StreamGuard::new(conn.clone());
            let state = state.clone();
            let peer = peer.clone();
            async move {
                let response = handle(&state, client, peer.as_deref(), request).await;
                Ok::<_, Infallible>(response.map(|body| guard.responded(body)))
            }
        })
    };
    let (h1, h2) = builders;
    match protocol {
        Protocol::Http1 => {
            let connection = h1.serve_connection(io, service);
            watch_connection(connection, &conn, state, client, shutdown).await;
        }
        Protocol::Http2 => {
            let connection = h2.serve_connection(io, service);
            watch_connection(connection, &conn, state, client, shutdown).await;
        }
    }
}

/// Drive a connection to its end, closing it when a timeout or the premature-reset guard says
/// so, or gracefully when the proxy shuts down.
async fn watch_connection<C>(
    connection: C,
    conn: &ConnState,
    state: &ListenerState,
    client: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let timer = tokio::time::sleep(conn.next_check());
    let mut timer = std::pin::pin!(timer);
    let reason = loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(client = %client, error = %e, "connection ended with an error");
                }
                return;
            }
            () = timer.as_mut() => match conn.check(Instant::now()) {
                Ok(next) => timer.as_mut().reset(next),
                Err(reason) => break Some(reason),
            },
            () = conn.abuse.notified() => break Some(CloseReason::PrematureResets),
            _ = shutdown.changed() => break None,
        }
    };
    connection.as_mut().graceful_shutdown();
    let grace = match reason {
        Some(reason) => {
            state.connections.closed_as(reason as usize);
            tracing::debug!(client = %client, reason = reason.as_str(), "closing the connection");
            CLOSE_GRACE
        }
        // The accept loop bounds the drain as a whole.
        None => DRAIN_TIMEOUT,
    };
    let _ = tokio::time::timeout(grace, connection).await;
}

/// What the timer of one connection needs to know, updated by its I/O and its requests
/// (HTTP/2 streams run on tasks of their own, hence atomics).
#[derive(Debug)]
pub(crate) struct ConnState {
    /// When the connection was accepted; times below are milliseconds since then, plus one
    /// (0 means unset).
    epoch: Instant,
    head_timeout: Duration,
    idle_timeout: Duration,
    /// Requests whose response is not finished.
    in_flight: AtomicU32,
    /// When the first byte of the next request head arrived; 0: none since the last response.
    head_started: AtomicU64,
    /// When the last response finished.
    idle_since: AtomicU64,
    /// HTTP/2: only the preface and first request count as a head; after that, frames such as
    /// PING are not a request starting.
    http2: AtomicBool,
    /// Streams started, and those the client reset before their response.
    streams: AtomicU32,
    premature_resets: AtomicU32,
    max_premature_resets: u32,
    /// Woken when the client has reset too many streams.
    abuse: Notify,
}

impl ConnState {
    fn new(limits: &Limits) -> Self {
        Self {
            epoch: Instant::now(),
            head_timeout: limits.request_head_timeout,
            idle_timeout: limits.idle_timeout,
            in_flight: AtomicU32::new(0),
            // The connection starts with a head on its way: detection and the first request.
            head_started: AtomicU64::new(1),
            idle_since: AtomicU64::new(1),
            http2: AtomicBool::new(false),
            streams: AtomicU32::new(0),
            premature_resets: AtomicU32::new(0),
            max_premature_resets: limits.http2_max_premature_resets,
            abuse: Notify::new(),
        }
    }

    fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn at(&self, stamp: u64) -> Instant {
        self.epoch + Duration::from_millis(stamp.saturating_sub(1))
    }

    /// Bytes arrived. Starts the head timer when they begin a new request.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
            && !(self.http2.load(Ordering::Relaxed) && self.streams.load(Ordering::Relaxed) > 0)
        {
            self.head_started
                .store(self.stamp(Instant::now()), Ordering::Relaxed);
        }
    }

    /// When the timer should next look.
    fn next_check(&self) -> Duration {
        self.head_timeout.min(self.idle_timeout)
    }

    /// `Ok(when to look next)`, or why the connection must close.
    fn check(&self, now: Instant) -> Result<Instant, CloseReason> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Ok(now + self.idle_timeout);
        }
        let head = self.head_started.load(Ordering::Acquire);
        let (deadline, reason) = if head != 0 {
            (self.at(head) + self.head_timeout, CloseReason::HeadTimeout)
        } else {
            let idle = self.idle_since.load(Ordering::Acquire);
            (self.at(idle) + self.idle_timeout, CloseReason::IdleTimeout)
        };
        if now >= deadline {
            Err(reason)
        } else {
            Ok(deadline)
        }
    }
}

/// One request on a connection, from its head to the end of its response body.
///
/// Dropped before a response was produced, the request was cancelled by the client (a reset
/// HTTP/2 stream, a closed HTTP/1.1 connection): counted toward the premature-reset limit.
pub(crate) struct StreamGuard {
    conn: Arc<ConnState>,
    responded: bool,
}

impl StreamGuard {
    fn new(conn: Arc<ConnState>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.head_started.store(0, Ordering::Release);
        conn.streams.fetch_add(1, Ordering::Relaxed);
        Self {
            conn,
            responded: false,
        }
    }

    /// The response head is ready: the guard now lives as long as its body.
    fn responded(mut self, body: ProxyBody) -> Guarded {
        self.responded = true;
        Guarded {
            inner: body,
            _guard: self,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let conn = &self.conn;
        if !self.responded {
            let resets = conn.premature_resets.fetch_add(1, Ordering::Relaxed) + 1;
            let streams = conn.streams.load(Ordering::Relaxed);
            if resets >= conn.max_premature_resets && resets.saturating_mul(2) >= streams {
                conn.abuse.notify_one();
            }
        }
        conn.idle_since
            .store(conn.stamp(Instant::now()), Ordering::Release);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is done.
    pub(crate) struct Guarded {
        #[pin]
        inner: ProxyBody,
        _guard: StreamGuard,
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The client's socket, with the bytes protocol detection read put back in front, and
    /// reads reported to the connection's timer.
    struct ConnIo {
        prefix: Bytes,
        #[pin]
        inner: Downstream,
        conn: Arc<ConnState>,
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(this.inner.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.conn.on_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
