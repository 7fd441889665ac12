//! mTLS between proxies and the control plane.
//!
//! With a client CA, the TLS handshake refuses clients without a certificate signed by it.
//! With mesh identities, certificates the control plane issued (chaining to its trust anchors)
//! are accepted too, and a client without a certificate gets through the handshake to reach
//! `Certify` only: the other services refuse it. A certificate proves a proxy holds *some*
//! valid identity; [`check_peer_identity`] then binds the identity the proxy claims in its
//! hello to the one its certificate carries, so that one proxy cannot ask for (and read)
//! another's filters and configs.

use std::path::{Path, PathBuf};

use tonic::Status;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use x509_parser::extensions::GeneralName;

use crate::Error;

/// Where the server's certificate and key, and optionally the client CA, are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server certificate's private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that sign proxy certificates. Without it (and without mesh
    /// identities), proxies are not asked for a certificate and their identities are not
    /// authenticated.
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Reads the files into tonic's server configuration. Errors name the file.
    ///
    /// With `mesh_anchors_pem` (the control plane issues workload certificates), client
    /// certificates may chain to those anchors as well as to the client CA, and are optional
    /// at the handshake: a proxy without one yet must reach `Certify`. The services that need
    /// one refuse callers without it.
    pub fn server_config(&self, mesh_anchors_pem: Option<&str>) -> Result<ServerTlsConfig, Error> {
        let cert = read_pem(&self.cert, "certificate")?;
        let key = read_pem(&self.key, "private key")?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        let mut roots = match &self.client_ca {
            Some(ca) => read_pem(ca, "client CA certificate")?,
            None => Vec::new(),
        };
        if let Some(anchors) = mesh_anchors_pem {
            if !roots.is_empty() && !roots.ends_with(b"\n") {
                roots.push(b'\n');
            }
            roots.extend_from_slice(anchors.as_bytes());
            config = config.client_auth_optional(true);
        }
        if !roots.is_empty() {
            config = config.client_ca_root(Certificate::from_pem(roots));
        }
        Ok(config)
    }

    /// Whether proxies must present a certificate (and so have their identity checked).
    pub fn authenticates_clients(&self) -> bool {
        self.client_ca.is_some()
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    let pem = std::fs::read(path).map_err(|error| Error::Read {
        path: path.to_owned(),
        error,
    })?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::Tls(format!(
            "{} is not a PEM file; expected the {what} between `-----BEGIN ...-----` lines",
            path.display()
        )));
    }
    Ok(pem)
}

/// The identities a certificate carries: its DNS and URI subject alternative names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// DNS SANs; `<name>.<namespace>` speaks for that proxy.
    pub dns: Vec<String>,
    /// URI SANs (SPIFFE IDs among them).
    pub uris: Vec<String>,
}

impl CertIdentity {
    /// Reads the SANs of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
        let mut identity = Self::default();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("cannot read the client certificate's SANs: {e}"))?;
        for name in san.iter().flat_map(|san| &san.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => identity.dns.push((*dns).to_owned()),
                GeneralName::URI(uri) => identity.uris.push((*uri).to_owned()),
                _ => {}
            }
        }
        Ok(identity)
    }

    /// Whether the certificate speaks for proxy `name` in `namespace`: a DNS SAN
    /// `<name>.<namespace>`, or a SPIFFE ID `spiffe://<trust domain>/ns/<namespace>/...`
    /// (a workload identity that covers every proxy of the namespace).
    pub fn matches(&self, name: &str, namespace: &str) -> bool {
        let dns = format!("{name}.{namespace}");
        let ns_path = format!("/ns/{namespace}/");
        self.dns.iter().any(|d| d.eq_ignore_ascii_case(&dns))
            || self.uris.iter().any(|uri| {
                uri.strip_prefix("spiffe://")
                    .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                    .is_some_and(|path| path.starts_with(&ns_path))
            })
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self
            .dns
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.uris.iter().map(|u| format!("URI:{u}")))
            .collect();
        if names.is_empty() {
            "no DNS or URI SAN".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// Checks that the client certificate (the first of `certs`) speaks for the proxy the hello
/// claims to be. `PermissionDenied` otherwise, naming both identities.
pub fn check_peer_identity(
    certs: &[impl AsRef<[u8]>],
    name: &str,
    namespace: &str,
) -> Result<(), Status> {
    let Some(leaf) = certs.first() else {
        return Ok(());
    };
    let identity = CertIdentity::from_der(leaf.as_ref()).map_err(Status::permission_denied)?;
    if identity.matches(name, namespace) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "the client certificate carries {}, but the hello claims proxy {name:?} in namespace \
         {namespace:?}; the certificate needs DNS SAN `{name}.{namespace}` or URI SAN \
         `spiffe://<trust domain>/ns/{namespace}/...`",
        identity.describe()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_and_spiffe_identities() {
        let id = CertIdentity {
            dns: vec!["edge-1.default".to_owned()],
            uris: vec!["spiffe://cluster.local/ns/billing/sa/proxy".to_owned()],
        };
        assert!(id.matches("edge-1", "default"));
        assert!(!id.matches("edge-2", "default"));
        assert!(id.matches("anything", "billing"));
        assert!(!id.matches("anything", "bill"));
        let bad = CertIdentity {
            dns: vec![],
            uris: vec!["https://example.com/ns/billing/x".to_owned()],
        };
        assert!(!bad.matches("x", "billing"));
    }
}
