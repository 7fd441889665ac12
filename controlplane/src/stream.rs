//! The `Subscribe` stream: one task per proxy that sends a snapshot whenever the filters
//! selecting the proxy change, and records the proxy's reports. And `FetchModule`: the bytes
//! of a module, for a proxy that a filter naming it selects.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::CertificateDer;
use tonic::{Request, Response, Status, Streaming};
use weft_api::v1::filter_distribution_server::{FilterDistribution, FilterDistributionServer};
use weft_api::v1::{
    self, FetchModuleRequest, Hello, ModuleChunk, Report, Snapshot, SubscribeRequest,
    subscribe_request::Kind,
};

use crate::catalog::ProxyIdentity;
use crate::control_plane::{ControlPlane, Published};
use crate::status::{ReportError, ReportStatus, SentFilter};

/// How long a new stream may take to send its hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest chunk `FetchModule` sends: small enough that no stream buffers much.
const CHUNK_BYTES: usize = 64 << 10;

/// The `FilterDistribution` gRPC service; get one from [`ControlPlane::service`].
#[derive(Debug, Clone)]
pub struct Distribution {
    cp: ControlPlane,
    /// Becomes `true` when the server shuts down; streams then end so that the server's
    /// graceful shutdown does not wait for proxies to hang up.
    shutdown: Option<watch::Receiver<bool>>,
    /// Whether callers must present a client certificate (TLS with a client CA, or with mesh
    /// identities: then the handshake lets certificate-less proxies in for `Certify` only).
    require_client_cert: bool,
}

/// What a caller without a client certificate is told where one is required.
pub(crate) const PRESENT_A_CERTIFICATE: &str = "present a client certificate: a workload \
    certificate from Certify or one signed by --client-ca";

impl Distribution {
    pub(crate) fn new(
        cp: ControlPlane,
        shutdown: Option<watch::Receiver<bool>>,
        require_client_cert: bool,
    ) -> Self {
        Self {
            cp,
            shutdown,
            require_client_cert,
        }
    }

    fn authenticate(
        &self,
        certs: Option<&[CertificateDer<'static>]>,
        identity: &ProxyIdentity,
    ) -> Result<Option<String>, Status> {
        authenticate(self.require_client_cert, certs, identity)
    }

    fn require_certificate(&self, certs: Option<&[CertificateDer<'static>]>) -> Result<(), Status> {
        require_certificate(self.require_client_cert, certs)
    }

    pub(crate) fn into_server(self) -> FilterDistributionServer<Self> {
        FilterDistributionServer::new(self)
            .max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(weft_api::MAX_MESSAGE_BYTES)
    }
}

/// Checks that the caller may speak for `identity`: its client certificate (required when
/// `require_client_cert`) must name it. Returns the certificate's SPIFFE ID, if it carries
/// one. The same check for every service a proxy calls.
pub(crate) fn authenticate(
    require_client_cert: bool,
    certs: Option<&[CertificateDer<'static>]>,
    identity: &ProxyIdentity,
) -> Result<Option<String>, Status> {
    match certs {
        None | Some([]) if require_client_cert => {
            Err(Status::unauthenticated(PRESENT_A_CERTIFICATE))
        }
        None | Some([]) => Ok(None),
        Some(certs) => {
            crate::tls::check_peer_identity(certs, &identity.name, &identity.namespace)?;
            Ok(weft_identity::tls::peer_identity(certs).map(|id| id.to_string()))
        }
    }
}

/// Refuses a caller without a client certificate where one is required, before reading
/// anything it sends.
pub(crate) fn require_certificate(
    require_client_cert: bool,
    certs: Option<&[CertificateDer<'static>]>,
) -> Result<(), Status> {
    if require_client_cert && certs.is_none_or(<[_]>::is_empty) {
        return Err(Status::unauthenticated(PRESENT_A_CERTIFICATE));
    }
    Ok(())
}

#[tonic::async_trait]
impl FilterDistribution for Distribution {
    type SubscribeStream = ReceiverStream<Result<Snapshot, Status>>;
    type FetchModuleStream = Pin<Box<dyn Stream<Item = Result<ModuleChunk, Status>> + Send>>;

    async fn fetch_module(
        &self,
        request: Request<FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        let peer_certs = request.peer_certs();
        let certs = peer_certs.as_deref().map(Vec::as_slice);
        self.require_certificate(certs)?;
        let request = request.into_inner();
        let identity = check_identity(request.identity)?;
        self.authenticate(certs, &identity)?;
        let published = Arc::clone(&self.cp.subscribe_catalog().borrow());
        let digest = request.sha256;
        let selected = published
            .catalog
            .select(&identity, self.cp.root_namespace())
            .iter()
            .any(|f| f.module_sha256 == digest);
        let bytes = match published.catalog.modules.get(&digest) {
            Some(bytes) if selected => bytes.clone(),
            _ => {
                return Err(Status::not_found(format!(
                    "no filter selecting proxy {}/{} uses module {digest}",
                    identity.namespace, identity.name
                )));
            }
        };
        tracing::debug!(
            proxy = %format_args!("{}/{}", identity.namespace, identity.name),
            module = %digest,
            bytes = bytes.len(),
            "sending module"
        );
        let total_size = bytes.len() as u64;
        // Slices of the shared buffer: no copy until tonic encodes each chunk.
        let chunks = (0..bytes.len().div_ceil(CHUNK_BYTES).max(1)).map(move |i| {
            let end = ((i + 1) * CHUNK_BYTES).min(bytes.len());
            Ok(ModuleChunk {
                data: bytes.slice(i * CHUNK_BYTES..end),
                total_size,
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer_certs = request.peer_certs();
        let certs = peer_certs.as_deref().map(Vec::as_slice);
        self.require_certificate(certs)?;
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound).await?;
        let identity = check_identity(hello.identity)?;
        let spiffe_id = self.authenticate(certs, &identity)?;
        tracing::info!(
            proxy = %format_args!("{}/{}", identity.namespace, identity.name),
            spiffe_id = spiffe_id.as_deref().unwrap_or("none"),
            serving_version = hello.serving_version,
            modules = hello.module_digests.len(),
            "proxy subscribed"
        );
        let stream = self
            .cp
            .register(identity.clone(), spiffe_id, hello.serving_version);
        let session = Session {
            cp: self.cp.clone(),
            identity,
            stream,
            last_filters: None,
        };
        let (tx, rx) = mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        tokio::spawn(session.run(inbound, tx, shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn read_hello(inbound: &mut Streaming<SubscribeRequest>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no Hello within {HELLO_TIMEOUT:?}; a Subscribe stream must start with one"
            ))
        })??;
    match first.and_then(|m| m.kind) {
        Some(Kind::Hello(hello)) => Ok(hello),
        Some(Kind::Report(_)) => Err(Status::invalid_argument(
            "the first message on a Subscribe stream must be a Hello, not a Report",
        )),
        None => Err(Status::invalid_argument(
            "the first message on a Subscribe stream must be a Hello; got none",
        )),
    }
}

pub(crate) fn check_identity(identity: Option<v1::ProxyIdentity>) -> Result<ProxyIdentity, Status> {
    let identity: ProxyIdentity = identity
        .ok_or_else(|| Status::invalid_argument("Hello.identity is missing"))?
        .into();
    if identity.name.is_empty() || identity.namespace.is_empty() {
        return Err(Status::invalid_argument(format!(
            "Hello.identity needs a name and a namespace; got name {:?}, namespace {:?}",
            identity.name, identity.namespace
        )));
    }
    Ok(identity)
}

/// One proxy's stream.
struct Session {
    cp: ControlPlane,
    identity: ProxyIdentity,
    /// This stream's id in the control plane's status table.
    stream: u64,
    /// The filters of the last snapshot sent; a new catalog that gives the same is not sent.
    last_filters: Option<Vec<v1::Filter>>,
}

/// Why a session ends.
enum End {
    /// The proxy hung up, the stream failed, or the server is shutting down.
    Closed,
    /// The proxy broke the protocol; it is told why.
    Refused(Status),
}

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<SubscribeRequest>,
        tx: mpsc::Sender<Result<Snapshot, Status>>,
        mut shutdown: Option<watch::Receiver<bool>>,
    ) {
        let mut catalog = self.cp.subscribe_catalog();
        catalog.mark_changed();
        let end = loop {
            tokio::select! {
                () = shutting_down(&mut shutdown) => {
                    break End::Refused(Status::unavailable("the control plane is shutting down"));
                }
                () = tx.closed() => break End::Closed,
                changed = catalog.changed() => {
                    if changed.is_err() {
                        break End::Closed;
                    }
                    let published = Arc::clone(&catalog.borrow_and_update());
                    let Some(snapshot) = self.next_snapshot(&published) else { continue };
                    tokio::select! {
                        () = shutting_down(&mut shutdown) => {
                            break End::Refused(Status::unavailable("the control plane is shutting down"));
                        }
                        sent = tx.send(Ok(snapshot)) => if sent.is_err() { break End::Closed },
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(SubscribeRequest { kind: Some(Kind::Report(report)) })) => {
                        self.on_report(report);
                    }
                    Ok(Some(_)) => break End::Refused(Status::invalid_argument(
                        "after the Hello, a Subscribe stream may only carry Reports",
                    )),
                    Ok(None) => break End::Closed,
                    Err(status) => {
                        tracing::debug!(proxy = %self.name(), %status, "proxy stream failed");
                        break End::Closed;
                    }
                },
            }
        };
        if let End::Refused(status) = end {
            // Best effort: the proxy may be gone already.
            let _ = tx.try_send(Err(status));
        }
        tracing::info!(proxy = %self.name(), "proxy disconnected");
        self.cp
            .update_status(&self.identity, self.stream, |status| {
                status.connected = false;
                status.disconnected_at = Some(SystemTime::now());
            });
    }

    fn name(&self) -> String {
        format!("{}/{}", self.identity.namespace, self.identity.name)
    }

    /// The snapshot to send for `published`, or `None` if this proxy's filters are what it
    /// was last sent (or nothing has been published yet).
    fn next_snapshot(&mut self, published: &Published) -> Option<Snapshot> {
        if published.version == 0 {
            return None;
        }
        let selected = published
            .catalog
            .select(&self.identity, self.cp.root_namespace());
        let filters: Vec<v1::Filter> = selected.iter().map(|f| f.to_proto()).collect();
        if self.last_filters.as_ref() == Some(&filters) {
            return None;
        }
        let version = published.version;
        let sent: Vec<SentFilter> = filters
            .iter()
            .map(|f| SentFilter {
                name: f.name.clone(),
                sha256: f.module_sha256.clone(),
                generation: f.generation,
            })
            .collect();
        self.cp
            .update_status(&self.identity, self.stream, |status| {
                status.sent_version = version;
                status.filters = sent;
            });
        tracing::debug!(
            proxy = %self.name(),
            version,
            filters = filters.len(),
            "sending snapshot"
        );
        self.last_filters = Some(filters.clone());
        Some(Snapshot { version, filters })
    }

    fn on_report(&mut self, report: Report) {
        let errors: Vec<ReportError> = report
            .errors
            .into_iter()
            .map(|e| ReportError {
                filter: e.filter,
                message: e.message,
            })
            .collect();
        if report.accepted {
            tracing::debug!(proxy = %self.name(), version = report.version, "snapshot accepted");
        } else {
            let summary = errors
                .iter()
                .map(|e| {
                    if e.filter.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.filter, e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(
                proxy = %self.name(),
                version = report.version,
                serving_version = report.serving_version,
                errors = %summary,
                "proxy rejected snapshot"
            );
        }
        let status = ReportStatus {
            version: report.version,
            accepted: report.accepted,
            errors,
        };
        self.cp.update_status(&self.identity, self.stream, |s| {
            s.serving_version = report.serving_version;
            s.last_report = Some(status);
        });
    }
}

/// Completes when `shutdown` turns `true`; never if there is no signal or its sender is gone.
pub(crate) async fn shutting_down(shutdown: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = shutdown
        && rx.wait_for(|&down| down).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}
