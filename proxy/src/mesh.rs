//! mTLS between sidecars, the step between accepting a connection and reading requests
//! ([`Inbound::accept`]), and the upstream side ([`Outbound::connect`]).
//!
//! The certificates come from [`crate::identity`], which installs each renewal into the one
//! [`MeshTls`] of the proxy; the rustls configurations here read it at every handshake, so a
//! rotation never touches established connections.
//!
//! Permissive listeners tell TLS from plaintext by the first byte, as Istio's permissive mode
//! does: a TLS connection starts with a handshake record (`0x16`), which no HTTP/1.1 method and
//! not the HTTP/2 preface begin with.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use hyper_util::client::legacy::connect::{Connected, Connection};
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_identity::SpiffeId;
use weft_identity::tls::{ALPN_H2, Handshake, MeshTls, classify, peer_identity};

use crate::config::InboundTls;
use crate::metrics::Metrics;

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The handshake counters of one side, resolved once, indexed by [`Handshake`].
#[derive(Debug, Clone)]
pub(crate) struct Handshakes(Arc<[Counter; Handshake::ALL.len()]>);

impl Handshakes {
    pub(crate) fn new(metrics: &Metrics, side: &'static str) -> Self {
        Self(Arc::new(
            Handshake::ALL.map(|result| metrics.tls_handshake(side, result.as_str())),
        ))
    }

    fn count(&self, result: Handshake) {
        self.0[result as usize].inc();
    }
}

/// A client connection after the TLS step: as accepted, or decrypted.
pub(crate) enum Downstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The authenticated caller of an mTLS connection, prepared once for all its requests.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Its SPIFFE ID, for filters.
    pub(crate) id: Arc<str>,
    /// The same, as a header value for `peer_identity_header`.
    pub(crate) header: HeaderValue,
}

impl Peer {
    /// None when `id` cannot be a header value (a SPIFFE ID always can).
    fn new(id: &str) -> Option<Self> {
        Some(Self {
            header: HeaderValue::from_str(id).ok()?,
            id: id.into(),
        })
    }
}

/// What the TLS step learned about a connection.
pub(crate) struct Accepted {
    pub(crate) stream: Downstream,
    /// The caller (mTLS only).
    pub(crate) peer: Option<Arc<Peer>>,
    /// Whether ALPN chose HTTP/2; none: no ALPN (plaintext, or a client that offered none).
    pub(crate) alpn_h2: Option<bool>,
}

/// Refusals logged per second at most; the rest are counted (the metric has them all) and
/// summed up in the next line, so a flood of bad handshakes cannot flood the log.
const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

/// An inbound listener's TLS step.
#[derive(Debug)]
pub(crate) struct Inbound {
    mode: InboundTls,
    config: Arc<rustls::ServerConfig>,
    handshakes: Handshakes,
    log: LogLimit,
}

/// At most [`REFUSALS_LOGGED_PER_SECOND`] log lines in each second.
#[derive(Debug)]
struct LogLimit {
    epoch: std::time::Instant,
    /// The second (since `epoch`) being counted, and the lines allowed or dropped in it.
    second: AtomicU64,
    logged: AtomicU32,
    dropped: AtomicU32,
}

impl LogLimit {
    fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            second: AtomicU64::new(0),
            logged: AtomicU32::new(0),
            dropped: AtomicU32::new(0),
        }
    }

    /// Whether to log now, and how many lines were dropped before this one (in earlier
    /// seconds). Races between threads only blur the count at a second's edge.
    fn admit(&self) -> Option<u32> {
        let now = self.epoch.elapsed().as_secs();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.logged.store(0, Ordering::Relaxed);
        }
        if self.logged.fetch_add(1, Ordering::Relaxed) < REFUSALS_LOGGED_PER_SECOND {
            Some(self.dropped.swap(0, Ordering::Relaxed))
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Inbound {
    pub(crate) fn new(mode: InboundTls, mesh: &MeshTls, handshakes: Handshakes) -> Self {
        Self {
            mode,
            config: mesh.server_config(),
            handshakes,
            log: LogLimit::new(),
        }
    }

    /// Peeks at the first byte, then serves plaintext (permissive only) or completes the
    /// mTLS handshake within `timeout`. None: the connection is to be closed (refused, timed
    /// out or gone); refusals are counted and logged with the client's address and reason.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        client: SocketAddr,
        listener: &str,
        timeout: Duration,
    ) -> Option<Accepted> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(1..)) => {}
            // Closed before a byte, or a socket error: nothing to refuse.
            Ok(Ok(0) | Err(_)) => return None,
            Err(_) => {
                self.refused(
                    client,
                    listener,
                    Handshake::Timeout,
                    "no byte before the head timeout",
                );
                return None;
            }
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if self.mode == InboundTls::Strict {
                self.refused(
                    client,
                    listener,
                    Handshake::Plaintext,
                    "plaintext on a listener that requires mTLS (tls.mode: strict)",
                );
                return None;
            }
            return Some(Accepted {
                stream: Downstream::Plain(stream),
                peer: None,
                alpn_h2: None,
            });
        }
        let tls = match tokio::time::timeout_at(
            deadline,
            TlsAcceptor::from(self.config.clone()).accept(stream),
        )
        .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                self.refused(client, listener, classify(&e), &e.to_string());
                return None;
            }
            Err(_) => {
                self.refused(
                    client,
                    listener,
                    Handshake::Timeout,
                    "the handshake did not finish in time",
                );
                return None;
            }
        };
        let (_, session) = tls.get_ref();
        let peer = session
            .peer_certificates()
            .and_then(peer_identity)
            .and_then(|id| Peer::new(id.as_str()))
            .map(Arc::new);
        let alpn_h2 = session.alpn_protocol().map(|p| p == ALPN_H2);
        self.handshakes.count(Handshake::Ok);
        Some(Accepted {
            stream: Downstream::Tls(Box::new(tls)),
            peer,
            alpn_h2,
        })
    }

    fn refused(&self, client: SocketAddr, listener: &str, result: Handshake, detail: &str) {
        self.handshakes.count(result);
        let reason = result.as_str();
        if let Some(dropped) = self.log.admit() {
            if dropped > 0 {
                tracing::warn!(%client, listener, reason, detail, not_logged_before = dropped, "mTLS handshake refused");
            } else {
                tracing::warn!(%client, listener, reason, detail, "mTLS handshake refused");
            }
        }
    }
}

/// How an upstream's connections are secured.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    config: Arc<rustls::ClientConfig>,
    /// The identity the upstream must present; none: any workload of the trust domain.
    expected: Option<Arc<SpiffeId>>,
    server_name: ServerName<'static>,
    handshakes: Handshakes,
}

impl Outbound {
    /// For connections to `endpoint` (`host:port`) offering ALPN `h2` or `http/1.1`.
    pub(crate) fn new(
        mesh: &MeshTls,
        h2: bool,
        endpoint: &str,
        expected: Option<&SpiffeId>,
        handshakes: Handshakes,
    ) -> Self {
        let host = endpoint
            .rsplit_once(':')
            .map_or(endpoint, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        // SNI carries no meaning here (identities are SPIFFE IDs); a name that does not parse
        // is sent as a fixed one.
        let server_name = ServerName::try_from(host.to_owned())
            .unwrap_or_else(|_| ServerName::try_from("weft.mesh").expect("a valid DNS name"));
        Self {
            config: mesh.client_config(h2),
            expected: expected.map(|id| Arc::new(id.clone())),
            server_name,
            handshakes,
        }
    }

    /// The mTLS handshake on a fresh connection, then the check of the server's identity.
    pub(crate) async fn connect(&self, tcp: TcpStream) -> std::io::Result<Upstream> {
        let connector = TlsConnector::from(self.config.clone());
        let tls = match connector.connect(self.server_name.clone(), tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                self.handshakes.count(classify(&e));
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("mTLS handshake with the upstream failed: {e}"),
                ));
            }
        };
        let (_, session) = tls.get_ref();
        if let Some(expected) = &self.expected {
            let presented = session.peer_certificates().and_then(peer_identity);
            if presented.as_ref() != Some(&**expected) {
                self.handshakes.count(Handshake::BadIdentity);
                let presented =
                    presented.map_or_else(|| "no SPIFFE ID".to_owned(), |id| id.to_string());
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("the upstream presented {presented}, but {expected} is required"),
                ));
            }
        }
        self.handshakes.count(Handshake::Ok);
        Ok(Upstream::Tls(Box::new(tls)))
    }
}

/// A connection to an upstream: plaintext, or mTLS.
pub(crate) enum Upstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for Upstream {
    fn connected(&self) -> Connected {
        match self {
            Upstream::Plain(tcp) => tcp.connected(),
            Upstream::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(ALPN_H2) {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

/// `AsyncRead` and `AsyncWrite` for a two-variant stream, by delegation.
macro_rules! delegate_io {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $ty::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::Plain(s) => s.is_write_vectored(),
                    $ty::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_flush(cx),
                    $ty::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $ty::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

delegate_io!(Downstream);
delegate_io!(Upstream);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_logs_are_limited_per_second() {
        let limit = LogLimit::new();
        let admitted = (0..100).filter(|_| limit.admit().is_some()).count();
        // All within one second (or, on a very slow machine, two).
        assert!(
            (REFUSALS_LOGGED_PER_SECOND as usize..=2 * REFUSALS_LOGGED_PER_SECOND as usize)
                .contains(&admitted),
            "{admitted} lines admitted"
        );
        // The next second's first line reports what was dropped.
        limit
            .second
            .store(limit.epoch.elapsed().as_secs() + 1000, Ordering::Relaxed);
        limit.logged.store(0, Ordering::Relaxed);
        let dropped = limit.admit().expect("a new second admits");
        assert_eq!(dropped as usize, 100 - admitted);
    }
}
