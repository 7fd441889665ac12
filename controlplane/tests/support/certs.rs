//! A test CA and certificates it signs (rcgen), for the mTLS tests and the TLS registry
//! (`registry.rs` includes this file).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

pub struct Ca {
    /// The CA certificate (PEM).
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate and key (PEM) signed by `ca` with the given SANs.
pub fn leaf(ca: &Ca, sans: Vec<SanType>) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

/// A server certificate and key (PEM) for `127.0.0.1` and `localhost`, signed by `ca`.
pub fn server_cert(ca: &Ca) -> (String, String) {
    leaf(
        ca,
        vec![
            dns("localhost"),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ],
    )
}
