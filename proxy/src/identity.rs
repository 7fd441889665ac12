//! This proxy's workload identity: a key made here, a certificate for it from the control
//! plane's `Identity.Certify`, renewed at about half its lifetime and installed into the
//! proxy's one [`MeshTls`] (see [`crate::mesh`]).
//!
//! Each request generates a fresh key; the key never leaves the process. The credential (a
//! projected service-account token or a bootstrap token) is read from its file at every
//! request, since projected tokens rotate. A failed request is retried with backoff while the
//! current certificate stays in use; the proxy is not ready until the first one arrives.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use weft_api::v1::CertifyRequest;
use weft_api::v1::identity_client::IdentityClient;
use weft_identity::tls::{Credentials, MeshTls, WorkloadKey};
use weft_runtime::error_chain;

use crate::config::{ControlPlaneConfig, IdentityConfig};
use crate::control;
use crate::metrics::Metrics;

/// The largest token file read.
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// How long one certificate request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The identity task's shared state: the mTLS it installs certificates into, and whether
/// one is installed (the proxy's readiness waits on it).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) mesh: Arc<MeshTls>,
    installed: watch::Sender<bool>,
}

impl Identity {
    pub(crate) fn new(mesh: Arc<MeshTls>) -> Self {
        Self {
            mesh,
            installed: watch::Sender::new(false),
        }
    }

    /// Completes once a workload certificate is installed.
    pub(crate) async fn installed(&self) {
        let mut rx = self.installed.subscribe();
        let _ = rx.wait_for(|&installed| installed).await;
    }
}

/// Keeps a valid certificate installed until shutdown.
pub(crate) async fn run(
    identity: Identity,
    cp: ControlPlaneConfig,
    config: IdentityConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let wait = match certify(&identity.mesh, &cp, &config).await {
            Ok(credentials) => {
                let not_after = credentials.not_after();
                let lifetime = not_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tracing::info!(
                    identity = credentials.identity().as_str(),
                    expires_in = ?Duration::from_secs(lifetime.as_secs()),
                    "workload certificate installed"
                );
                metrics.identity_renewed(Some(not_after));
                identity.mesh.install(credentials);
                identity.installed.send_replace(true);
                backoff = BACKOFF_MIN;
                // Renew at half the lifetime; the other half absorbs an outage. Never sooner
                // than the backoff's floor, whatever lifetime the control plane chose.
                (lifetime / 2).max(BACKOFF_MIN)
            }
            Err(e) => {
                metrics.identity_renewed(None);
                // Retry sooner than the backoff when the certificate in use runs out first.
                let left = identity.mesh.current().map(|c| {
                    c.not_after()
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                });
                tracing::warn!(
                    address = %cp.address,
                    error = %e,
                    retry_in = ?backoff,
                    current_expires_in = ?left.map(|d| Duration::from_secs(d.as_secs())),
                    "cannot get a workload certificate"
                );
                let wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                match left {
                    Some(left) if left > Duration::ZERO => wait.min(left / 4).max(BACKOFF_MIN),
                    _ => wait,
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One certificate request.
async fn certify(
    mesh: &MeshTls,
    cp: &ControlPlaneConfig,
    config: &IdentityConfig,
) -> Result<Credentials, String> {
    let token = read_token(config).await?;
    let key = WorkloadKey::generate()?;
    let csr_der = key.csr_der()?;
    let endpoint = control::endpoint(cp, Some(mesh))?;
    let request = async {
        let channel = endpoint.connect().await.map_err(|e| error_chain(&e))?;
        IdentityClient::new(channel)
            .certify(CertifyRequest {
                csr_der,
                token,
                namespace: config.namespace.clone(),
                service_account: config.service_account.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))??;
    let credentials = Credentials::new(
        &key,
        &response.certificate_chain_pem,
        &response.trust_anchors_pem,
    )
    .map_err(|e| format!("the control plane's answer is unusable: {e}"))?;
    let id = credentials.identity();
    if id.namespace() != config.namespace || id.service_account() != config.service_account {
        return Err(format!(
            "the control plane issued {id}, but this proxy asked for namespace {:?}, service \
             account {:?}",
            config.namespace, config.service_account
        ));
    }
    Ok(credentials)
}

async fn read_token(config: &IdentityConfig) -> Result<String, String> {
    let path = &config.token_file;
    let cannot = |e: std::io::Error| format!("cannot read the token file {}: {e}", path.display());
    let size = tokio::fs::metadata(path).await.map_err(cannot)?.len();
    if size > MAX_TOKEN_BYTES {
        return Err(format!(
            "the token file {} has {size} bytes, more than a token may ({MAX_TOKEN_BYTES})",
            path.display()
        ));
    }
    let token = tokio::fs::read_to_string(path).await.map_err(cannot)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_owned())
}
