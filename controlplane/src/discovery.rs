//! The `Discovery` gRPC service: one `Watch` stream per proxy, sending every service of the
//! namespaces it asked for, then only what changed, and recording its ACKs and NACKs.
//!
//! **A slow proxy costs nothing.** A stream computes an update only when its proxy can take
//! one (a send slot is free): changes published meanwhile are folded into that one update,
//! by diffing the newest catalog against the one last sent. Nothing queues per proxy but
//! the one message in flight.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weft_api::v1::discovery_server::{Discovery, DiscoveryServer};
use weft_api::v1::{
    DiscoveryHello, DiscoveryReport, DiscoveryRequest, DiscoveryUpdate, discovery_request::Kind,
};

use crate::ControlPlane;
use crate::catalog::ProxyIdentity;
use crate::service::check_dns_label;
use crate::services::{Namespaces, PublishedServices, ServiceMap, all, diff};
use crate::status::{DiscoveryStatus, MAX_REPORT_ERRORS, MAX_REPORT_MESSAGE, ServiceReportError};
use crate::stream::{
    HELLO_TIMEOUT, authenticate, check_identity, require_certificate, shutting_down,
};

/// The most namespaces a hello may name.
pub const MAX_NAMESPACES: usize = 256;

/// The largest message a proxy may send: a hello or a report, never module-sized.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The `Discovery` gRPC service; get one from [`ControlPlane::discovery_service`] or
/// [`server::serve`](crate::server::serve).
#[derive(Debug, Clone)]
pub struct DiscoveryService {
    cp: ControlPlane,
    shutdown: Option<watch::Receiver<bool>>,
    require_client_cert: bool,
}

impl DiscoveryService {
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

    pub(crate) fn into_server(self) -> DiscoveryServer<Self> {
        DiscoveryServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(weft_api::MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type WatchStream = ReceiverStream<Result<DiscoveryUpdate, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let peer_certs = request.peer_certs();
        let certs = peer_certs.as_deref().map(Vec::as_slice);
        require_certificate(self.require_client_cert, certs)?;
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound).await?;
        let identity = check_identity(hello.identity)?;
        let spiffe_id = authenticate(self.require_client_cert, certs, &identity)?;
        let namespaces = check_namespaces(hello.namespaces)?;
        tracing::info!(
            proxy = %format_args!("{}/{}", identity.namespace, identity.name),
            spiffe_id = spiffe_id.as_deref().unwrap_or("none"),
            namespaces = ?namespaces.as_slice(),
            "proxy watches services"
        );
        let (stream, superseded) = self.cp.register_discovery(DiscoveryStatus {
            identity: identity.clone(),
            spiffe_id,
            connected: true,
            connected_at: SystemTime::now(),
            namespaces: namespaces.as_slice().to_vec(),
            sent_version: 0,
            services: 0,
            acked: 0,
            nacked: 0,
            errors: Vec::new(),
        });
        let session = Session {
            cp: self.cp.clone(),
            identity,
            stream,
            namespaces,
            sent: None,
        };
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(session.run(inbound, tx, self.shutdown.clone(), superseded));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn read_hello(inbound: &mut Streaming<DiscoveryRequest>) -> Result<DiscoveryHello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no DiscoveryHello within {HELLO_TIMEOUT:?}; a Watch stream must start with one"
            ))
        })??;
    match first.and_then(|m| m.kind) {
        Some(Kind::Hello(hello)) => Ok(hello),
        Some(Kind::Report(_)) => Err(Status::invalid_argument(
            "the first message on a Watch stream must be a DiscoveryHello, not a report",
        )),
        None => Err(Status::invalid_argument(
            "the first message on a Watch stream must be a DiscoveryHello; got none",
        )),
    }
}

fn check_namespaces(namespaces: Vec<String>) -> Result<Namespaces, Status> {
    if namespaces.len() > MAX_NAMESPACES {
        return Err(Status::invalid_argument(format!(
            "DiscoveryHello.namespaces names {} namespaces; at most {MAX_NAMESPACES} (or none \
             for all)",
            namespaces.len()
        )));
    }
    for namespace in &namespaces {
        check_dns_label(namespace)
            .map_err(|m| Status::invalid_argument(format!("DiscoveryHello.namespaces: {m}")))?;
    }
    Ok(Namespaces::new(namespaces))
}

/// One proxy's `Watch` stream.
struct Session {
    cp: ControlPlane,
    identity: ProxyIdentity,
    stream: u64,
    namespaces: Namespaces,
    /// The catalog the last update was computed from; `None` before the first (full) one.
    sent: Option<Arc<ServiceMap>>,
}

enum End {
    Closed,
    Refused(Status),
}

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<DiscoveryRequest>,
        tx: mpsc::Sender<Result<DiscoveryUpdate, Status>>,
        mut shutdown: Option<watch::Receiver<bool>>,
        mut superseded: watch::Receiver<bool>,
    ) {
        let mut services = self.cp.subscribe_services();
        // Something may be due: the current catalog, if one was published.
        let mut due = true;
        let end = loop {
            tokio::select! {
                () = shutting_down(&mut shutdown) => {
                    break End::Refused(Status::unavailable("the control plane is shutting down"));
                }
                replaced = superseded.wait_for(|&s| s) => {
                    if replaced.is_ok() {
                        break End::Refused(Status::aborted(
                            "a newer Watch stream of this proxy replaced this one",
                        ));
                    }
                    // The entry's sender is gone only when the control plane is; never here.
                    break End::Closed;
                }
                () = tx.closed() => break End::Closed,
                changed = services.changed(), if !due => {
                    if changed.is_err() {
                        break End::Closed;
                    }
                    due = true;
                }
                // Computed only once the proxy can take a message: every change published
                // while it could not is folded into this one update.
                permit = tx.reserve(), if due => {
                    let Ok(permit) = permit else { break End::Closed };
                    due = false;
                    let published = Arc::clone(&services.borrow_and_update());
                    if let Some(update) = self.next_update(&published) {
                        permit.send(Ok(update));
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(DiscoveryRequest { kind: Some(Kind::Report(report)) })) => {
                        self.on_report(report);
                    }
                    Ok(Some(_)) => break End::Refused(Status::invalid_argument(
                        "after the DiscoveryHello, a Watch stream may only carry reports",
                    )),
                    Ok(None) => break End::Closed,
                    Err(status) => {
                        tracing::debug!(proxy = %self.name(), %status, "watch stream failed");
                        break End::Closed;
                    }
                },
            }
        };
        if let End::Refused(status) = end {
            let _ = tx.try_send(Err(status));
        }
        tracing::info!(proxy = %self.name(), "proxy stopped watching services");
        self.cp
            .update_discovery(&self.identity, self.stream, |status| {
                status.connected = false;
            });
    }

    fn name(&self) -> String {
        format!("{}/{}", self.identity.namespace, self.identity.name)
    }

    /// The update that brings the proxy from what it was sent to `published`: whole the
    /// first time, then the changes, or `None` when none concern it.
    fn next_update(&mut self, published: &PublishedServices) -> Option<DiscoveryUpdate> {
        if published.version == 0 {
            return None;
        }
        let update = match &self.sent {
            None => DiscoveryUpdate {
                version: published.version,
                full: true,
                services: all(&published.services, &self.namespaces),
                removed: Vec::new(),
            },
            Some(sent) => {
                let (services, removed) = diff(sent, &published.services, &self.namespaces);
                if services.is_empty() && removed.is_empty() {
                    self.sent = Some(Arc::clone(&published.services));
                    return None;
                }
                DiscoveryUpdate {
                    version: published.version,
                    full: false,
                    services,
                    removed,
                }
            }
        };
        self.sent = Some(Arc::clone(&published.services));
        let held = published
            .services
            .values()
            .filter(|s| self.namespaces.wants(s))
            .count();
        tracing::debug!(
            proxy = %self.name(),
            version = update.version,
            full = update.full,
            services = update.services.len(),
            removed = update.removed.len(),
            "sending discovery update"
        );
        self.cp
            .update_discovery(&self.identity, self.stream, |status| {
                status.sent_version = update.version;
                status.services = held;
            });
        Some(update)
    }

    fn on_report(&mut self, report: DiscoveryReport) {
        if report.accepted {
            tracing::debug!(proxy = %self.name(), version = report.version, "discovery update accepted");
            self.cp
                .update_discovery(&self.identity, self.stream, |status| {
                    status.acked = status.acked.max(report.version);
                });
            return;
        }
        let errors: Vec<ServiceReportError> = report
            .errors
            .into_iter()
            .take(MAX_REPORT_ERRORS)
            .map(|e| ServiceReportError {
                service: truncate(e.service),
                message: truncate(e.message),
            })
            .collect();
        let summary = errors
            .iter()
            .map(|e| {
                if e.service.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.service, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(
            proxy = %self.name(),
            version = report.version,
            errors = %summary,
            "proxy refused a discovery update; it keeps routing by what it had"
        );
        self.cp
            .update_discovery(&self.identity, self.stream, |status| {
                status.nacked = report.version;
                status.errors = errors;
            });
    }
}

/// `text` cut to at most [`MAX_REPORT_MESSAGE`] bytes, at a character boundary.
fn truncate(mut text: String) -> String {
    if text.len() > MAX_REPORT_MESSAGE {
        let mut end = MAX_REPORT_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
