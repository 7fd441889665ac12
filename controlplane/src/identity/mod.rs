//! The mesh's certificate authority as a gRPC service: `Identity.Certify` (see
//! `api/proto/weft/control/v1/control.proto` for the contract).
//!
//! A proxy sends a CSR over a key it made, the credential it was given (a bootstrap token, or
//! its pod's service-account token) and the identity it asks for. The control plane checks
//! the names, then the credential ([`credentials`]): it must prove exactly the namespace and
//! service account asked for. Then the [`Authority`] signs a short-lived certificate whose
//! only SAN is the workload's SPIFFE ID.
//!
//! Answers: `INVALID_ARGUMENT` (a malformed CSR, namespace or service account),
//! `UNAUTHENTICATED` (the credential proves nothing), `PERMISSION_DENIED` (it proves another
//! workload), `UNAVAILABLE` (the credential cannot be checked now), `FAILED_PRECONDITION`
//! (this control plane issues no identities).

pub mod credentials;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tonic::{Request, Response, Status};
use weft_api::v1::identity_server::{Identity, IdentityServer};
use weft_api::v1::{CertifyRequest, CertifyResponse};
use weft_identity::SpiffeId;
use weft_identity::authority::{Authority, IssueError};

pub use self::credentials::{
    BootstrapTokens, DEFAULT_TOKEN_AUDIENCE, Proven, ReviewError, Reviewer, TokenReviewer,
};

/// The largest `Certify` request accepted: a CSR (at most 16 KiB), a token and two names.
pub const MAX_CERTIFY_REQUEST_BYTES: usize = 64 << 10;

/// The certificate authority and the credential check in front of it.
#[derive(Debug)]
pub struct Issuer {
    authority: Authority,
    reviewer: Reviewer,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    issued: AtomicU64,
    invalid_argument: AtomicU64,
    unauthenticated: AtomicU64,
    permission_denied: AtomicU64,
    unavailable: AtomicU64,
}

/// What `Certify` has done since start, for the admin endpoint's `/identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// Whether this control plane issues identities at all.
    pub enabled: bool,
    /// The trust domain of the SPIFFE IDs it issues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// How credentials are checked: `bootstrap-tokens` or `kubernetes-token-review`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<&'static str>,
    /// Certificates issued.
    pub issued: u64,
    /// Requests refused, by the gRPC code they got.
    pub refused: RefusedCounts,
}

/// Refused `Certify` requests by code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedCounts {
    /// Malformed CSRs and names.
    pub invalid_argument: u64,
    /// Credentials that prove nothing.
    pub unauthenticated: u64,
    /// Credentials that prove another workload.
    pub permission_denied: u64,
    /// Credentials that could not be checked now (or a certificate that could not be
    /// signed).
    pub unavailable: u64,
}

impl IdentityStatus {
    /// The status of a control plane that issues no identities.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            trust_domain: None,
            credentials: None,
            issued: 0,
            refused: RefusedCounts::default(),
        }
    }
}

impl Issuer {
    /// Issues certificates from `authority` to callers whose credential `reviewer` accepts.
    pub fn new(authority: Authority, reviewer: Reviewer) -> Self {
        Self {
            authority,
            reviewer,
            counts: Counts::default(),
        }
    }

    /// The certificate authority.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// How credentials are checked.
    pub fn reviewer(&self) -> &Reviewer {
        &self.reviewer
    }

    /// Counts of issued and refused requests.
    pub fn status(&self) -> IdentityStatus {
        let c = &self.counts;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        IdentityStatus {
            enabled: true,
            trust_domain: Some(self.authority.trust_domain().to_owned()),
            credentials: Some(self.reviewer.kind()),
            issued: get(&c.issued),
            refused: RefusedCounts {
                invalid_argument: get(&c.invalid_argument),
                unauthenticated: get(&c.unauthenticated),
                permission_denied: get(&c.permission_denied),
                unavailable: get(&c.unavailable),
            },
        }
    }

    /// Answers one `Certify` request from `peer`.
    pub async fn certify(
        &self,
        request: CertifyRequest,
        peer: Option<SocketAddr>,
    ) -> Result<CertifyResponse, Status> {
        let result = self.certify_counted(request, peer).await;
        let counter = match &result {
            Ok(_) => &self.counts.issued,
            Err(status) => match status.code() {
                tonic::Code::InvalidArgument => &self.counts.invalid_argument,
                tonic::Code::Unauthenticated => &self.counts.unauthenticated,
                tonic::Code::PermissionDenied => &self.counts.permission_denied,
                _ => &self.counts.unavailable,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn certify_counted(
        &self,
        request: CertifyRequest,
        peer: Option<SocketAddr>,
    ) -> Result<CertifyResponse, Status> {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let CertifyRequest {
            csr_der,
            token,
            namespace,
            service_account,
        } = request;
        let asked = SpiffeId::new(self.authority.trust_domain(), &namespace, &service_account)
            .map_err(|e| {
                tracing::info!(%peer, error = %e, "Certify refused: bad identity asked for");
                Status::invalid_argument(e.to_string())
            })?;
        let token_sha256 = credentials::token_digest_prefix(&token);
        let proven = match self.reviewer.review(&token).await {
            Ok(proven) => proven,
            Err(ReviewError::Unauthenticated(message)) => {
                tracing::info!(
                    %peer,
                    asked = %asked,
                    %token_sha256,
                    reason = %message,
                    "Certify refused: the credential proves nothing"
                );
                return Err(Status::unauthenticated(message));
            }
            Err(ReviewError::Unavailable(message)) => {
                tracing::warn!(%peer, asked = %asked, reason = %message, "Certify failed");
                return Err(Status::unavailable(message));
            }
        };
        if proven.namespace != namespace || proven.service_account != service_account {
            tracing::warn!(
                %peer,
                asked = %asked,
                proven = %proven,
                %token_sha256,
                "Certify refused: the credential proves another workload than the one asked for"
            );
            return Err(Status::permission_denied(format!(
                "the credential is for service account {:?} in namespace {:?}, not {:?} in {:?}",
                proven.service_account, proven.namespace, service_account, namespace
            )));
        }
        let issued = self.authority.issue(&csr_der, &asked).map_err(|e| match e {
            IssueError::MalformedCsr(_) => {
                tracing::info!(%peer, asked = %asked, error = %e, "Certify refused");
                Status::invalid_argument(e.to_string())
            }
            IssueError::Signing(_) => {
                tracing::error!(%peer, asked = %asked, error = %e, "cannot issue a certificate");
                Status::internal(e.to_string())
            }
        })?;
        let not_after_unix = issued
            .not_after
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        tracing::info!(
            %peer,
            "issued {} until {}",
            issued.identity,
            humantime::format_rfc3339_seconds(issued.not_after)
        );
        Ok(CertifyResponse {
            certificate_chain_pem: issued.chain_pem,
            trust_anchors_pem: self.authority.trust_anchors_pem().to_owned(),
            spiffe_id: issued.identity.to_string(),
            not_after_unix,
        })
    }
}

/// `Certify` calls in progress at once; more are `RESOURCE_EXHAUSTED` at once (the caller
/// retries with backoff). Each may cost a TokenReview on the API server and a signature, and
/// needs no credential to be made, so an unbounded number would let anyone who can reach
/// the port load the API server.
pub const MAX_CONCURRENT_CERTIFY: usize = 64;

/// The `Identity` gRPC service: [`Issuer::certify`], or `FAILED_PRECONDITION` without one.
#[derive(Debug, Clone)]
pub struct IdentityService {
    issuer: Option<Arc<Issuer>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl IdentityService {
    /// The service for `issuer` (none: every request is `FAILED_PRECONDITION`).
    pub fn new(issuer: Option<Arc<Issuer>>) -> Self {
        Self {
            issuer,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CERTIFY)),
        }
    }

    /// The tonic server, accepting requests up to [`MAX_CERTIFY_REQUEST_BYTES`].
    pub fn into_server(self) -> IdentityServer<Self> {
        IdentityServer::new(self).max_decoding_message_size(MAX_CERTIFY_REQUEST_BYTES)
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let Some(issuer) = &self.issuer else {
            return Err(Status::failed_precondition(
                "this control plane issues no identities; start it with --identity-dir DIR \
                 (or --identity-trust-anchors, --identity-issuer-cert and \
                 --identity-issuer-key)",
            ));
        };
        let Ok(_slot) = self.slots.try_acquire() else {
            return Err(Status::resource_exhausted(format!(
                "{MAX_CONCURRENT_CERTIFY} certificate requests are in progress; retry later"
            )));
        };
        let peer = request.remote_addr();
        issuer
            .certify(request.into_inner(), peer)
            .await
            .map(Response::new)
    }
}
