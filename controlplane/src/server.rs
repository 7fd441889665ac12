//! Serving the gRPC services on a TCP listener, with TLS when configured, until shut down:
//! `FilterDistribution`, `Discovery`, and `Identity` (which answers `FAILED_PRECONDITION` unless the
//! control plane runs a certificate authority).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::discovery::DiscoveryService;
use crate::identity::{IdentityService, Issuer};
use crate::stream::Distribution;
use crate::tls::TlsConfig;
use crate::{ControlPlane, Error};

/// HTTP/2 pings on idle connections, so that a proxy that vanished (host gone, network cut)
/// is noticed and its stream marked disconnected instead of lingering.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gRPC server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Serves `control_plane`'s `FilterDistribution` and `Discovery` services and the `Identity` service of
/// `identity` on `listener` (TLS when `tls` is given) until [`ServerHandle::shutdown`].
///
/// With TLS and `identity`, client certificates chain to the client CA (if any) or to the
/// mesh's trust anchors, and are optional at the handshake so that a proxy without one yet
/// can call `Certify`; `Subscribe`, `FetchModule` and `Watch` then refuse callers without one
/// (`UNAUTHENTICATED`), as they do whenever a client CA is given.
pub async fn serve(
    control_plane: &ControlPlane,
    listener: TcpListener,
    tls: Option<&TlsConfig>,
    identity: Option<Arc<Issuer>>,
) -> Result<ServerHandle, Error> {
    tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime("the gRPC server"))?;
    let local_addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    let mesh_anchors = identity
        .as_ref()
        .map(|issuer| issuer.authority().trust_anchors_pem());
    let require_client_cert = match tls {
        Some(tls) => {
            builder = builder
                .tls_config(tls.server_config(mesh_anchors)?)
                .map_err(|e| {
                    Error::Tls(format!(
                        "cannot use certificate {} with key {}: {e}",
                        tls.cert.display(),
                        tls.key.display()
                    ))
                })?;
            let require = tls.authenticates_clients() || mesh_anchors.is_some();
            if !require {
                tracing::warn!(
                    "no client CA configured: proxy identities are not authenticated; any \
                     client can subscribe as any proxy"
                );
            }
            require
        }
        None => {
            tracing::warn!(
                "TLS is off: proxy identities are not authenticated and filters travel in \
                 clear text"
            );
            if identity.is_some() {
                tracing::warn!(
                    "TLS is off: proxies' credentials (tokens) travel to Certify in clear text; \
                     serve with --tls-cert and --tls-key"
                );
            }
            false
        }
    };
    let (shutdown, signal) = watch::channel(false);
    let service = Distribution::new(
        control_plane.clone(),
        Some(signal.clone()),
        require_client_cert,
    )
    .into_server();
    let discovery = DiscoveryService::new(
        control_plane.clone(),
        Some(signal.clone()),
        require_client_cert,
    )
    .into_server();
    let identity = IdentityService::new(identity).into_server();
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let mut signal_rx = signal;
    let task = tokio::spawn(async move {
        builder
            .add_service(service)
            .add_service(discovery)
            .add_service(identity)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = signal_rx.wait_for(|&down| down).await;
            })
            .await
    });
    Ok(ServerHandle {
        local_addr,
        shutdown,
        task,
    })
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, ends every proxy stream (proxies see `UNAVAILABLE` and reconnect
    /// elsewhere or later) and waits for connections to close.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "gRPC server task failed"),
        }
    }
}
