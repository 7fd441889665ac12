//! Mesh identity for weft: who a workload is, how it gets a certificate that says so, and
//! the mTLS that sidecars speak with it.
//!
//! - [`SpiffeId`]: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
//! - [`authority`]: the control plane's certificate authority (trust anchor, issuer key,
//!   issuing X.509 SVIDs from certificate signing requests).
//! - [`tls`]: the sidecar's key, its [`Credentials`](tls::Credentials), and the rustls
//!   configurations ([`MeshTls`](tls::MeshTls)) that follow certificate rotation without
//!   being rebuilt.
//!
//! The proxy and the control plane both depend on this crate; it depends on neither.

pub mod authority;
mod spiffe;
pub mod tls;

pub use spiffe::{IdError, SpiffeId, check_name, check_trust_domain};
