//! The mesh's certificate authority, run by the control plane: a trust anchor that every
//! sidecar trusts, and an issuer key that signs workload certificates (X.509 SVIDs).
//!
//! The issuer is either the trust anchor itself (the generated default: one self-signed CA,
//! persisted beside the control plane) or an intermediate signed by it (files from a secret
//! store, so the anchor's key can stay offline). Every issued certificate is checked against
//! the anchors before it leaves, so a mismatched anchor/issuer pair fails at start, not in
//! the sidecars' handshakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, UnixTime};

use crate::SpiffeId;
use crate::spiffe::check_trust_domain;
use crate::tls::{parse_anchors, verify_chain};

/// The longest lifetime a workload certificate may be given.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
/// How far back a certificate's validity starts, for peers whose clocks are behind.
const BACKDATE: Duration = Duration::from_secs(60);
/// The generated trust anchor's lifetime.
const ANCHOR_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The file names of a generated (or mounted) authority in its directory.
pub const ANCHOR_FILE: &str = "ca.pem";
/// The issuer key's file name in the authority directory.
pub const KEY_FILE: &str = "ca-key.pem";
/// Largest CSR accepted.
const MAX_CSR_BYTES: usize = 16 << 10;

/// Why the authority cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// A file cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Anything else: generating keys, a bad trust domain or lifetime, an issuer that does not
    /// chain to the anchors.
    #[error("{0}")]
    Other(String),
}

/// Why a certificate was not issued: the caller's fault (a malformed request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The CSR is not a valid, correctly self-signed PKCS#10 request.
    #[error("the certificate signing request is malformed: {0}")]
    MalformedCsr(String),
    /// Signing failed (the authority's fault).
    #[error("cannot sign the certificate: {0}")]
    Signing(String),
}

/// A certificate the authority issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The workload certificate, then the intermediate issuer if there is one (PEM).
    pub chain_pem: String,
    /// The identity it carries.
    pub identity: SpiffeId,
    /// When it expires.
    pub not_after: SystemTime,
}

/// The certificate authority.
pub struct Authority {
    trust_domain: String,
    lifetime: Duration,
    anchors_pem: String,
    anchors: Arc<rustls::RootCertStore>,
    /// The issuer's certificate, sent after the leaf when it is not itself an anchor.
    intermediate: Option<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: SystemTime,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .field("lifetime", &self.lifetime)
            .field("anchors", &self.anchors.len())
            .field("intermediate", &self.intermediate.is_some())
            .finish_non_exhaustive()
    }
}

/// Where the authority's keys come from.
#[derive(Debug, Clone)]
pub enum AuthoritySource {
    /// `ca.pem` and `ca-key.pem` in this directory, generated (and written) when absent.
    Directory(PathBuf),
    /// Mounted files (a Kubernetes Secret): the trust anchors (one or more PEM certificates),
    /// the issuer's certificate (an anchor, or an intermediate signed by one) and its key.
    Files {
        /// Trust anchors, PEM.
        anchors: PathBuf,
        /// Issuer certificate, PEM.
        issuer_cert: PathBuf,
        /// Issuer key, PEM (PKCS#8, SEC1 or PKCS#1).
        issuer_key: PathBuf,
    },
}

impl Authority {
    /// Loads (or, for an empty directory, generates and persists) the authority. The second
    /// value says whether it was generated.
    pub fn load(
        source: &AuthoritySource,
        trust_domain: &str,
        lifetime: Duration,
    ) -> Result<(Self, bool), AuthorityError> {
        check_trust_domain(trust_domain).map_err(|e| AuthorityError::Other(e.to_string()))?;
        if lifetime < Duration::from_secs(1) || lifetime > MAX_LIFETIME {
            return Err(AuthorityError::Other(format!(
                "certificate lifetime {lifetime:?} must be between 1s and {} days",
                MAX_LIFETIME.as_secs() / 86400
            )));
        }
        match source {
            AuthoritySource::Directory(dir) => {
                let anchor = dir.join(ANCHOR_FILE);
                let key = dir.join(KEY_FILE);
                match (anchor.exists(), key.exists()) {
                    (true, true) => Ok((
                        Self::from_files(&anchor, &anchor, &key, trust_domain, lifetime)?,
                        false,
                    )),
                    (false, false) => {
                        Self::generate(dir, &anchor, &key, trust_domain)?;
                        Ok((
                            Self::from_files(&anchor, &anchor, &key, trust_domain, lifetime)?,
                            true,
                        ))
                    }
                    (true, false) | (false, true) => Err(AuthorityError::Other(format!(
                        "{} holds only one of {ANCHOR_FILE} and {KEY_FILE}; restore the other \
                         (replacing the authority would make every issued certificate \
                         untrusted) or remove both to generate a new authority",
                        dir.display()
                    ))),
                }
            }
            AuthoritySource::Files {
                anchors,
                issuer_cert,
                issuer_key,
            } => Ok((
                Self::from_files(anchors, issuer_cert, issuer_key, trust_domain, lifetime)?,
                false,
            )),
        }
    }

    fn generate(
        dir: &Path,
        anchor_path: &Path,
        key_path: &Path,
        trust_domain: &str,
    ) -> Result<(), AuthorityError> {
        let other = |e: rcgen::Error| AuthorityError::Other(format!("cannot generate the CA: {e}"));
        let key = KeyPair::generate().map_err(other)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "weft");
        // A name of its own, so that a certificate from another generated anchor is told
        // apart by name (an unknown issuer), not by a signature that fails to verify.
        let mut id = [0u8; 6];
        let _ = getrandom::fill(&mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        dn.push(
            DnType::CommonName,
            format!("weft mesh trust anchor for {trust_domain} ({id})"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + ANCHOR_LIFETIME).into();
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key).map_err(other)?;
        std::fs::create_dir_all(dir).map_err(|error| AuthorityError::Io {
            path: dir.to_owned(),
            error,
        })?;
        write_private(key_path, key.serialize_pem().as_bytes())?;
        write_private(anchor_path, cert.pem().as_bytes())?;
        Ok(())
    }

    fn from_files(
        anchors_path: &Path,
        issuer_path: &Path,
        key_path: &Path,
        trust_domain: &str,
        lifetime: Duration,
    ) -> Result<Self, AuthorityError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|error| AuthorityError::Io {
                path: path.to_owned(),
                error,
            })
        };
        let invalid = |path: &Path, message: String| AuthorityError::Invalid {
            path: path.to_owned(),
            message,
        };
        let anchors_pem = read(anchors_path)?;
        let anchors = parse_anchors(&anchors_pem).map_err(|e| invalid(anchors_path, e))?;
        let issuer_pem = read(issuer_path)?;
        let issuer_der = CertificateDer::pem_slice_iter(issuer_pem.as_bytes())
            .next()
            .ok_or_else(|| invalid(issuer_path, "no certificate in the file".to_owned()))?
            .map_err(|e| invalid(issuer_path, format!("not a PEM certificate: {e}")))?;
        let key_pem = read(key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(key_path, format!("not a usable private key: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&issuer_der)
            .map_err(|e| invalid(issuer_path, format!("cannot parse the certificate: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                key_path,
                format!("this key does not belong to {}", issuer_path.display()),
            ));
        }
        let issuer_not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(parsed.validity().not_after.timestamp().max(0) as u64);
        if issuer_not_after <= SystemTime::now() {
            return Err(invalid(
                issuer_path,
                "the issuer certificate has expired".to_owned(),
            ));
        }
        let is_anchor = anchors_pem_contains(&anchors_pem, &issuer_der);
        let issuer = Issuer::from_ca_cert_der(&issuer_der, key)
            .map_err(|e| invalid(issuer_path, format!("not a usable issuer: {e}")))?;
        let authority = Self {
            trust_domain: trust_domain.to_owned(),
            lifetime,
            anchors_pem,
            anchors: Arc::new(anchors),
            intermediate: (!is_anchor).then(|| issuer_der.into_owned()),
            issuer,
            issuer_not_after,
        };
        authority.self_test()?;
        Ok(authority)
    }

    /// Issues a certificate to a throwaway key and verifies it against the anchors.
    fn self_test(&self) -> Result<(), AuthorityError> {
        let key = KeyPair::generate()
            .map_err(|e| AuthorityError::Other(format!("cannot generate a key: {e}")))?;
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .map_err(|e| AuthorityError::Other(format!("cannot write a CSR: {e}")))?;
        let id = SpiffeId::new(&self.trust_domain, "weft-self-test", "weft-self-test")
            .map_err(|e| AuthorityError::Other(e.to_string()))?;
        let issued = self
            .issue(csr.der(), &id)
            .map_err(|e| AuthorityError::Other(e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| AuthorityError::Other(format!("issued an unreadable chain: {e}")))?;
        verify_chain(&chain, &self.anchors, UnixTime::now()).map_err(|e| {
            AuthorityError::Other(format!(
                "the issuer does not chain to the trust anchors (a certificate it signs fails \
                 verification: {e}); check that the issuer certificate is signed by one of \
                 the anchors"
            ))
        })
    }

    /// The trust domain of every identity this authority issues.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust anchors (PEM), handed to sidecars with their certificates.
    pub fn trust_anchors_pem(&self) -> &str {
        &self.anchors_pem
    }

    /// Signs a certificate for `identity` over the public key of `csr_der`. Only the CSR's
    /// key (and its self-signature, proof that the caller holds the private key) is used; the
    /// authority decides every other field. The caller has checked that the requester may
    /// have `identity`.
    pub fn issue(&self, csr_der: &[u8], identity: &SpiffeId) -> Result<Issued, IssueError> {
        if csr_der.len() > MAX_CSR_BYTES {
            return Err(IssueError::MalformedCsr(format!(
                "{} bytes, more than the {MAX_CSR_BYTES} a CSR may have",
                csr_der.len()
            )));
        }
        if csr_der.is_empty() {
            return Err(IssueError::MalformedCsr("it is empty".to_owned()));
        }
        let requested =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| IssueError::MalformedCsr(e.to_string()))?;
        let now = SystemTime::now();
        let not_after = (now + self.lifetime).min(self.issuer_not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names =
            vec![SanType::URI(identity.as_str().try_into().map_err(
                |e: rcgen::Error| IssueError::Signing(e.to_string()),
            )?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let csr = CertificateSigningRequestParams {
            params,
            public_key: requested.public_key,
        };
        let leaf = csr
            .signed_by(&self.issuer)
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        let mut chain_pem = leaf.pem();
        if let Some(intermediate) = &self.intermediate {
            chain_pem.push_str(&pem_of(intermediate));
        }
        Ok(Issued {
            chain_pem,
            identity: identity.clone(),
            // The certificate's own second-precision time.
            not_after: SystemTime::UNIX_EPOCH
                + Duration::from_secs(
                    not_after
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                ),
        })
    }
}

fn anchors_pem_contains(anchors_pem: &str, der: &CertificateDer<'_>) -> bool {
    CertificateDer::pem_slice_iter(anchors_pem.as_bytes())
        .filter_map(Result::ok)
        .any(|anchor| anchor.as_ref() == der.as_ref())
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    // Base64 is ASCII, so 64-byte chunks are whole characters.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A random positive 128-bit serial number.
fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // Without randomness, time still gives distinct serials.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_be_bytes();
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Writes `bytes` to `path` readable by its owner only, through a temporary file and a rename
/// so that a crash never leaves half a key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthorityError> {
    let io = |error| AuthorityError::Io {
        path: path.to_owned(),
        error,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn csr() -> (KeyPair, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        (key, csr.der().to_vec())
    }

    #[test]
    fn generated_authority_persists_and_issues() {
        let dir = tempfile_dir();
        let source = AuthoritySource::Directory(dir.clone());
        let (ca, generated) =
            Authority::load(&source, "cluster.local", Duration::from_secs(60)).unwrap();
        assert!(generated);
        let id = SpiffeId::new("cluster.local", "shop", "orders").unwrap();
        let (_, der) = csr();
        let issued = ca.issue(&der, &id).unwrap();
        let chain: Vec<_> = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(chain.len(), 1);
        assert_eq!(crate::tls::peer_identity(&chain).unwrap(), id);
        // Loaded again: the same anchor, so the certificate stays trusted.
        let (again, generated) =
            Authority::load(&source, "cluster.local", Duration::from_secs(60)).unwrap();
        assert!(!generated);
        verify_chain(&chain, &again.anchors, UnixTime::now()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn malformed_csrs_are_refused() {
        let dir = tempfile_dir();
        let (ca, _) = Authority::load(
            &AuthoritySource::Directory(dir.clone()),
            "td",
            Duration::from_secs(60),
        )
        .unwrap();
        let id = SpiffeId::new("td", "a", "b").unwrap();
        assert!(matches!(
            ca.issue(b"", &id),
            Err(IssueError::MalformedCsr(_))
        ));
        assert!(matches!(
            ca.issue(b"\x30\x03\x02\x01\x00", &id),
            Err(IssueError::MalformedCsr(_))
        ));
        // A valid CSR with one flipped bit in its signature.
        let (_, mut der) = csr();
        let last = der.len() - 1;
        der[last] ^= 1;
        assert!(matches!(
            ca.issue(&der, &id),
            Err(IssueError::MalformedCsr(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn half_an_authority_is_not_replaced() {
        let dir = tempfile_dir();
        let source = AuthoritySource::Directory(dir.clone());
        Authority::load(&source, "td", Duration::from_secs(60)).unwrap();
        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let err = Authority::load(&source, "td", Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("only one of"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_intermediate_issuer_is_sent_after_the_leaf() {
        let dir = tempfile_dir();
        let ca = |params: &mut CertificateParams| {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        };
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::default();
        root.distinguished_name.push(DnType::CommonName, "root");
        ca(&mut root);
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);
        let key = KeyPair::generate().unwrap();
        let mut intermediate = CertificateParams::default();
        intermediate
            .distinguished_name
            .push(DnType::CommonName, "intermediate");
        ca(&mut intermediate);
        let intermediate_cert = intermediate.signed_by(&key, &root_issuer).unwrap();
        for (file, pem) in [
            ("anchors.pem", root_cert.pem()),
            ("issuer.pem", intermediate_cert.pem()),
            ("issuer-key.pem", key.serialize_pem()),
        ] {
            std::fs::write(dir.join(file), pem).unwrap();
        }
        let source = AuthoritySource::Files {
            anchors: dir.join("anchors.pem"),
            issuer_cert: dir.join("issuer.pem"),
            issuer_key: dir.join("issuer-key.pem"),
        };
        let (ca, generated) = Authority::load(&source, "td", Duration::from_secs(60)).unwrap();
        assert!(!generated);
        let (_, der) = csr();
        let issued = ca
            .issue(&der, &SpiffeId::new("td", "a", "b").unwrap())
            .unwrap();
        let chain: Vec<_> = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].as_ref(), intermediate_cert.der().as_ref());
        verify_chain(&chain, &ca.anchors, UnixTime::now()).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "weft-identity-{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
