//! Trust for `https://` URLs and registries: the extra CA roots of
//! [`FetchOptions`](super::FetchOptions), the process-wide rustls crypto provider, and hints
//! for the TLS failures a person can fix.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::{FetchError, chain, failure};

/// rustls needs a process-wide crypto provider, since reqwest is built without one. Another
/// part of the process may have installed one already; that one is as good.
pub(super) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(super) fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, FetchError> {
    let from = "extra_roots_pem";
    if pem.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let roots = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failure(from, format!("not PEM: {e}")))?;
    if roots.is_empty() {
        return Err(failure(from, "no CERTIFICATE section in the PEM text"));
    }
    Ok(roots)
}

pub(super) fn reqwest_roots(
    roots: &[CertificateDer<'static>],
) -> Result<Vec<reqwest::Certificate>, FetchError> {
    roots
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der).map_err(|e| failure("extra_roots_pem", chain(&e)))
        })
        .collect()
}

/// What to do about the TLS failures a person can fix, found in an error's text (reqwest
/// keeps rustls' error inside an I/O error, so the text is all there is).
pub(super) fn tls_hint(message: &str, registry: bool) -> &'static str {
    if message.contains("invalid peer certificate") {
        "; if the server's certificate comes from a private CA, add that CA to the extra trusted \
         roots"
    } else if message.contains("InvalidContentType") && registry {
        "; the server does not seem to speak TLS: list a plain-HTTP registry among the insecure \
         registries"
    } else if message.contains("InvalidContentType") {
        "; the server does not seem to speak TLS"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn extra_roots_must_be_certificates() {
        assert!(parse_roots(b"").unwrap().is_empty());
        assert!(parse_roots(b"\n").unwrap().is_empty());
        let err = parse_roots(b"hello").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }
}
