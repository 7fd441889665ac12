//! Connecting to one endpoint: TCP (and the mesh mTLS handshake) within the connect timeout,
//! and the upstream's connection limit (`max_connections`, with at most
//! `max_pending_requests` waiting for one).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::mesh::{self, Outbound};

/// Which limit of an upstream's circuit breaker a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    Connections,
    PendingRequests,
    Requests,
}

impl Overflow {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Overflow::Connections => "max_connections",
            Overflow::PendingRequests => "max_pending_requests",
            Overflow::Requests => "max_requests",
        }
    }
}

/// A connect refused by the connection limit; found again in hyper's error chain.
#[derive(Debug, thiserror::Error)]
#[error("over the upstream's {} limit ({limit})", kind.as_str())]
pub(crate) struct OverLimit {
    pub(crate) kind: Overflow,
    pub(crate) limit: u32,
}

/// The connections open to one upstream's endpoints, and those waiting for one.
#[derive(Debug)]
pub(crate) struct ConnLimit {
    open: AtomicU32,
    pending: AtomicU32,
    freed: Notify,
    pub(crate) max_connections: u32,
    pub(crate) max_pending: u32,
}

impl ConnLimit {
    pub(crate) fn new(max_connections: u32, max_pending: u32) -> Self {
        Self {
            open: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            freed: Notify::new(),
            max_connections,
            max_pending,
        }
    }

    fn try_open(self: &Arc<Self>) -> Option<ConnPermit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnPermit(self.clone()))
    }

    /// A permit to open a connection: at once while under `max_connections`, else after
    /// waiting (as one of at most `max_pending`) for one to close, until `deadline`.
    async fn acquire(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
    ) -> Result<ConnPermit, OverLimit> {
        if let Some(permit) = self.try_open() {
            return Ok(permit);
        }
        let over_pending = OverLimit {
            kind: Overflow::PendingRequests,
            limit: self.max_pending,
        };
        if self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_pending).then_some(n + 1)
            })
            .is_err()
        {
            return Err(over_pending);
        }
        let _waiting = Waiting(self);
        loop {
            let freed = self.freed.notified();
            if let Some(permit) = self.try_open() {
                return Ok(permit);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(OverLimit {
                    kind: Overflow::Connections,
                    limit: self.max_connections,
                });
            }
        }
    }
}

struct Waiting<'a>(&'a ConnLimit);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection's share of the limit, released when the connection closes.
#[derive(Debug)]
pub(crate) struct ConnPermit(Arc<ConnLimit>);

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

/// Connects to one fixed endpoint whatever the request's authority says.
///
/// Requests keep their original `Host`/`:authority` (as Envoy does by default), so the URI
/// the client sees cannot be what decides where to connect.
///
/// With mesh mTLS the connector also runs the handshake (within the same connect timeout)
/// and checks the upstream's identity, so a pooled connection is always an authenticated one.
#[derive(Clone, Debug)]
pub(crate) struct FixedConnector {
    pub(crate) endpoint: Arc<str>,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls: Option<Outbound>,
    pub(crate) limit: Arc<ConnLimit>,
}

impl tower_service::Service<http::Uri> for FixedConnector {
    type Response = TokioIo<Conn>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let endpoint = self.endpoint.clone();
        let timeout = self.connect_timeout;
        let tls = self.tls.clone();
        let limit = self.limit.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let permit = limit
                .acquire(deadline)
                .await
                .map_err(std::io::Error::other)?;
            let timed_out =
                |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
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
            Ok(TokioIo::new(Conn {
                io: stream,
                _permit: permit,
            }))
        })
    }
}

/// An upstream connection holding its share of the connection limit.
pub(crate) struct Conn {
    io: mesh::Upstream,
    _permit: ConnPermit,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
