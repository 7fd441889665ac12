//! The sidecar's side: its key and certificate, and the rustls configurations that speak mTLS
//! with them.
//!
//! One [`MeshTls`] per proxy holds the current [`Credentials`] behind an `ArcSwap`. The
//! server and client configurations are built once and never rebuilt: their certificate
//! resolvers and verifiers read the current credentials at each handshake, so a renewal or a
//! new trust bundle applies to the next handshake while established connections (and pooled
//! upstream connections) go on untouched, and TLS session caches survive rotations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rcgen::{CertificateParams, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, SignatureScheme,
};
use x509_parser::extensions::GeneralName;

use crate::SpiffeId;

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// A private key made here; it never leaves the proxy.
pub struct WorkloadKey(KeyPair);

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkloadKey(..)")
    }
}

impl WorkloadKey {
    /// A new ECDSA P-256 key.
    pub fn generate() -> Result<Self, String> {
        KeyPair::generate()
            .map(Self)
            .map_err(|e| format!("cannot generate a key: {e}"))
    }

    /// A certificate signing request (DER) over this key. It names nothing: the authority
    /// decides the identity from the caller's credential.
    pub fn csr_der(&self) -> Result<Vec<u8>, String> {
        CertificateParams::default()
            .serialize_request(&self.0)
            .map(|csr| csr.der().to_vec())
            .map_err(|e| format!("cannot write a certificate signing request: {e}"))
    }
}

/// What a sidecar proves itself with, and whom it trusts.
pub struct Credentials {
    identity: SpiffeId,
    certified: Arc<CertifiedKey>,
    anchors: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    not_after: SystemTime,
    chain_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Credentials")
            .field("identity", &self.identity.as_str())
            .field("not_after", &self.not_after)
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks a certificate chain the authority issued for `key` (it must be for this key,
    /// carry one SPIFFE ID, and chain to `anchors_pem`) and makes credentials of it.
    pub fn new(key: &WorkloadKey, chain_pem: &str, anchors_pem: &str) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("the certificate chain is not PEM: {e}"))?;
        let Some(leaf) = chain.first() else {
            return Err("the certificate chain is empty".to_owned());
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| format!("cannot parse the certificate: {e}"))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.0.public_key_raw() {
            return Err("the certificate is not for this proxy's key".to_owned());
        }
        let identity = peer_identity(&chain)
            .ok_or_else(|| "the certificate carries no workload SPIFFE ID".to_owned())?;
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0),
            );
        let anchors = Arc::new(parse_anchors(anchors_pem)?);
        verify_chain(&chain, &anchors, UnixTime::now()).map_err(|e| {
            format!("the certificate does not verify against the trust anchors: {e}")
        })?;
        let key_der = PrivateKeyDer::try_from(key.0.serialize_der())
            .map_err(|e| format!("cannot use the key: {e}"))?;
        let signing = provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| format!("cannot use the key: {e}"))?;
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(anchors.clone(), provider())
                .build()
                .map_err(|e| format!("cannot verify clients with these anchors: {e}"))?;
        Ok(Self {
            identity,
            certified,
            anchors,
            client_verifier,
            not_after,
            chain_pem: chain_pem.to_owned(),
            key_pem: key.0.serialize_pem(),
        })
    }

    /// The identity the certificate carries.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate chain (PEM), for clients that take files (the control-plane channel).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key (PEM), for the same. Never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// Reads a trust bundle: one or more PEM certificates.
pub fn parse_anchors(pem: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("not a usable trust anchor: {e}"))?;
    }
    if store.is_empty() {
        return Err("no certificate in the trust bundle".to_owned());
    }
    Ok(store)
}

/// Verifies that `chain` (leaf first) chains to `anchors` and is valid now.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    anchors: &RootCertStore,
    now: UnixTime,
) -> Result<(), Error> {
    let (leaf, intermediates) = chain.split_first().ok_or(Error::NoCertificatesPresented)?;
    let parsed = ParsedCertificate::try_from(leaf)?;
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        anchors,
        intermediates,
        now,
        algorithms().all,
    )
}

/// The workload identity of a peer's certificate chain: the leaf's one `spiffe://` URI SAN.
/// None when there is no such SAN, or more than one.
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && uri.starts_with("spiffe://")
        {
            if found.is_some() {
                return None;
            }
            found = Some(SpiffeId::parse(uri).ok()?);
        }
    }
    found
}

/// The proxy's mTLS: current credentials, and configurations that always use them.
#[derive(Debug)]
pub struct MeshTls {
    current: Arc<ArcSwapOption<Credentials>>,
    server: Arc<ServerConfig>,
    client_h1: Arc<ClientConfig>,
    client_h2: Arc<ClientConfig>,
}

impl MeshTls {
    /// Configurations without credentials yet: handshakes fail until [`MeshTls::install`].
    pub fn new() -> Result<Self, String> {
        let current: Arc<ArcSwapOption<Credentials>> = Arc::new(ArcSwapOption::empty());
        let resolver = Arc::new(Resolver(current.clone()));
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(MeshClientVerifier(current.clone())))
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        let client = |alpn: &[u8]| -> Result<Arc<ClientConfig>, String> {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(MeshServerVerifier(current.clone())))
                .with_client_cert_resolver(resolver.clone());
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            client_h1: client(ALPN_HTTP1)?,
            client_h2: client(ALPN_H2)?,
            server: Arc::new(server),
            current,
        })
    }

    /// Uses `credentials` from the next handshake on.
    pub fn install(&self, credentials: Credentials) {
        self.current.store(Some(Arc::new(credentials)));
    }

    /// The credentials in use, if any.
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.current.load_full()
    }

    /// For inbound listeners: requires a client certificate chaining to the anchors with a
    /// SPIFFE ID of the trust domain; offers `h2` and `http/1.1`.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// For upstream connections: presents this proxy's certificate and requires a server
    /// certificate chaining to the anchors with a SPIFFE ID of the trust domain. Check the
    /// exact identity after the handshake with [`peer_identity`]. `h2` selects the ALPN
    /// offered.
    pub fn client_config(&self, h2: bool) -> Arc<ClientConfig> {
        if h2 {
            self.client_h2.clone()
        } else {
            self.client_h1.clone()
        }
    }
}

#[derive(Debug)]
struct Resolver(Arc<ArcSwapOption<Credentials>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().as_ref().map(|c| c.certified.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.load().as_ref().map(|c| c.certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An identity that is not a workload of our trust domain: refused as a wrong name.
fn check_trust_domain(
    chain_leaf: &CertificateDer<'_>,
    credentials: &Credentials,
) -> Result<(), Error> {
    match peer_identity(std::slice::from_ref(chain_leaf)) {
        Some(id) if id.trust_domain() == credentials.identity.trust_domain() => Ok(()),
        _ => Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
    }
}

fn no_credentials() -> Error {
    Error::General("this proxy has no workload certificate yet".to_owned())
}

#[derive(Debug)]
struct MeshClientVerifier(Arc<ArcSwapOption<Credentials>>);

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let current = self.0.load();
        let credentials = current.as_ref().ok_or_else(no_credentials)?;
        credentials
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        check_trust_domain(end_entity, credentials)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

#[derive(Debug)]
struct MeshServerVerifier(Arc<ArcSwapOption<Credentials>>);

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let current = self.0.load();
        let credentials = current.as_ref().ok_or_else(no_credentials)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &credentials.anchors,
            intermediates,
            now,
            algorithms().all,
        )?;
        check_trust_domain(end_entity, credentials)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// How a handshake ended, as a metric label ([`Handshake::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Completed.
    Ok,
    /// Not TLS at all.
    Plaintext,
    /// No chain to the anchors.
    Untrusted,
    /// Expired, or not yet valid.
    Expired,
    /// No SPIFFE ID of the trust domain, or not the one expected.
    BadIdentity,
    /// The client sent no certificate.
    NoCertificate,
    /// Not done in time.
    Timeout,
    /// Anything else: a protocol error, a closed socket.
    Error,
}

impl Handshake {
    /// Every result, in declaration order (`result as usize` indexes it).
    pub const ALL: [Handshake; 8] = [
        Handshake::Ok,
        Handshake::Plaintext,
        Handshake::Untrusted,
        Handshake::Expired,
        Handshake::BadIdentity,
        Handshake::NoCertificate,
        Handshake::Timeout,
        Handshake::Error,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Handshake::Ok => "ok",
            Handshake::Plaintext => "plaintext",
            Handshake::Untrusted => "untrusted",
            Handshake::Expired => "expired",
            Handshake::BadIdentity => "bad_identity",
            Handshake::NoCertificate => "no_certificate",
            Handshake::Timeout => "timeout",
            Handshake::Error => "error",
        }
    }
}

/// Why a handshake failed.
pub fn classify(error: &std::io::Error) -> Handshake {
    if error.kind() == std::io::ErrorKind::TimedOut {
        return Handshake::Timeout;
    }
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return Handshake::Error;
    };
    classify_tls(tls)
}

/// [`classify`] for a rustls error.
pub fn classify_tls(error: &Error) -> Handshake {
    use rustls::AlertDescription as A;
    match error {
        Error::InvalidCertificate(e) => match e {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Handshake::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Handshake::BadIdentity
            }
            _ => Handshake::Untrusted,
        },
        Error::NoCertificatesPresented => Handshake::NoCertificate,
        Error::AlertReceived(A::CertificateExpired) => Handshake::Expired,
        Error::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateUnknown) => {
            Handshake::Untrusted
        }
        Error::AlertReceived(A::CertificateRequired) => Handshake::NoCertificate,
        Error::InvalidMessage(_) => Handshake::Plaintext,
        _ => Handshake::Error,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
