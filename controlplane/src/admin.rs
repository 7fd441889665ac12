//! The admin HTTP endpoint: status for humans and scripts.
//!
//! - `GET /proxies`: every proxy that subscribed or watches services, with what it was sent
//!   and what it answered (`discovery`: its `Watch` stream's namespaces, sent version, last
//!   ACKed and NACKed versions and the NACK's reasons).
//! - `GET /filters`: the catalog's filters and the source's errors.
//! - `GET /identity`: whether the control plane issues workload certificates, and how many it
//!   issued and refused (by reason) since start.
//! - `GET /healthz`: `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::identity::{IdentityStatus, Issuer};
use crate::{ControlPlane, Error, ProxyStatus, SourceError};

/// How long shutdown waits for in-flight admin requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running admin endpoint.
#[derive(Debug)]
pub struct AdminHandle {
    local_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Serves the admin endpoint for `control_plane` (and the certificate authority `identity`,
/// if it runs one) on `listener` until [`AdminHandle::shutdown`].
pub fn serve(
    control_plane: &ControlPlane,
    listener: TcpListener,
    identity: Option<Arc<Issuer>>,
) -> Result<AdminHandle, Error> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::NoRuntime("the admin endpoint"))?;
    let local_addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let (shutdown, mut stop) = oneshot::channel();
    let cp = control_plane.clone();
    let task = runtime.spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin endpoint cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let cp = cp.clone();
            let identity = identity.clone();
            let service = service_fn(move |request| {
                let response = respond(&cp, identity.as_deref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%peer, error = %e, "admin connection failed");
                }
            });
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::debug!("admin connections still open at shutdown; dropping them");
        }
    });
    Ok(AdminHandle {
        local_addr,
        shutdown,
        task,
    })
}

impl AdminHandle {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits (briefly) for open requests.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "admin endpoint task failed");
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProxiesView {
    catalog_version: u64,
    services_version: u64,
    proxies: Vec<ProxyStatus>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FiltersView {
    catalog_version: u64,
    filters: Vec<FilterView>,
    errors: Vec<SourceError>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FilterView {
    namespace: String,
    name: String,
    generation: i64,
    sha256: String,
    phase: crate::definition::Phase,
    priority: i32,
}

fn respond(
    cp: &ControlPlane,
    identity: Option<&Issuer>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/proxies" | "/filters" | "/identity" | "/healthz") {
        return text(
            StatusCode::NOT_FOUND,
            "not found; try /proxies, /filters, /identity or /healthz\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
    }
    match path {
        "/proxies" => json(&ProxiesView {
            catalog_version: cp.version(),
            services_version: cp.services_version(),
            proxies: cp.proxies(),
        }),
        "/filters" => {
            let catalog = cp.catalog();
            let mut filters: Vec<FilterView> = catalog
                .filters
                .into_iter()
                .map(|f| FilterView {
                    namespace: f.namespace,
                    name: f.name,
                    generation: f.generation,
                    sha256: f.module_sha256,
                    phase: f.settings.phase,
                    priority: f.settings.priority,
                })
                .collect();
            filters.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            json(&FiltersView {
                catalog_version: cp.version(),
                filters,
                errors: cp.source_errors(),
            })
        }
        "/identity" => json(&identity.map_or_else(IdentityStatus::disabled, Issuer::status)),
        _ => text(StatusCode::OK, "ok"),
    }
}

fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => response(StatusCode::OK, "application/json", body),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the status as JSON: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
