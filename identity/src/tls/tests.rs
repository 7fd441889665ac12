//! Handshakes between real rustls connections, in memory.

use std::time::Duration;

use rustls::{ClientConnection, ServerConnection};

use super::*;
use crate::authority::{Authority, AuthoritySource};

fn authority(td: &str) -> (Authority, std::path::PathBuf) {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let dir =
        std::env::temp_dir().join(format!("weft-identity-tls-{:x}", u64::from_le_bytes(bytes)));
    let (ca, _) = Authority::load(
        &AuthoritySource::Directory(dir.clone()),
        td,
        Duration::from_secs(600),
    )
    .unwrap();
    (ca, dir)
}

fn mesh(ca: &Authority, ns: &str, sa: &str) -> MeshTls {
    let key = WorkloadKey::generate().unwrap();
    let id = SpiffeId::new(ca.trust_domain(), ns, sa).unwrap();
    let issued = ca.issue(&key.csr_der().unwrap(), &id).unwrap();
    let mesh = MeshTls::new().unwrap();
    mesh.install(Credentials::new(&key, &issued.chain_pem, ca.trust_anchors_pem()).unwrap());
    mesh
}

/// Runs a handshake to its end; the server's view of the client's identity, or the first
/// error either side saw.
fn handshake(
    client: &MeshTls,
    server: &MeshTls,
) -> Result<(Option<SpiffeId>, Option<SpiffeId>), Error> {
    let name = ServerName::try_from("mesh.local").unwrap();
    let mut c = ClientConnection::new(client.client_config(true), name)?;
    let mut s = ServerConnection::new(server.server_config())?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // The client's last flight (its certificate, TLS 1.3) reaches the server.
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            assert_eq!(s.alpn_protocol(), Some(ALPN_H2));
            return Ok((
                s.peer_certificates().and_then(peer_identity),
                c.peer_certificates().and_then(peer_identity),
            ));
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn sidecars_of_one_mesh_see_each_other() {
    let (ca, dir) = authority("cluster.local");
    let a = mesh(&ca, "shop", "orders");
    let b = mesh(&ca, "shop", "reviews");
    let (client, server) = handshake(&a, &b).unwrap();
    assert_eq!(
        client.unwrap().as_str(),
        "spiffe://cluster.local/ns/shop/sa/orders"
    );
    assert_eq!(
        server.unwrap().as_str(),
        "spiffe://cluster.local/ns/shop/sa/reviews"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_authority_is_untrusted_both_ways() {
    let (ca, dir) = authority("cluster.local");
    let (other, other_dir) = authority("cluster.local");
    let a = mesh(&ca, "shop", "orders");
    let stranger = mesh(&other, "shop", "orders");
    let err = handshake(&stranger, &a).unwrap_err();
    assert_eq!(classify_tls(&err).as_str(), "untrusted", "{err:?}");
    let err = handshake(&a, &stranger).unwrap_err();
    assert_eq!(classify_tls(&err).as_str(), "untrusted", "{err:?}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(other_dir).unwrap();
}

#[test]
fn no_credentials_no_handshake() {
    let (ca, dir) = authority("cluster.local");
    let a = mesh(&ca, "shop", "orders");
    let empty = MeshTls::new().unwrap();
    assert!(handshake(&a, &empty).is_err());
    assert!(handshake(&empty, &a).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn credentials_refuse_a_certificate_for_another_key() {
    let (ca, dir) = authority("cluster.local");
    let key = WorkloadKey::generate().unwrap();
    let other = WorkloadKey::generate().unwrap();
    let id = SpiffeId::new("cluster.local", "a", "b").unwrap();
    let issued = ca.issue(&key.csr_der().unwrap(), &id).unwrap();
    let err = Credentials::new(&other, &issued.chain_pem, ca.trust_anchors_pem()).unwrap_err();
    assert!(err.contains("not for this proxy's key"), "{err}");
    let debug = format!(
        "{:?}",
        Credentials::new(&key, &issued.chain_pem, ca.trust_anchors_pem()).unwrap()
    );
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    std::fs::remove_dir_all(dir).unwrap();
}
