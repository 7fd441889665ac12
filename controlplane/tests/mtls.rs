//! mTLS: the handshake refuses certificates from other CAs, and the hello's identity must be
//! the certificate's.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/certs.rs"]
mod certs;
mod common;

use std::path::Path;

use certs::{Ca, dns, leaf, new_ca};
use common::*;
use rcgen::SanType;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use weft_api::v1::filter_distribution_client::FilterDistributionClient;
use weft_api::v1::{SubscribeRequest, subscribe_request::Kind};
use weft_controlplane::ControlPlane;
use weft_controlplane::server::{self, ServerHandle};
use weft_controlplane::tls::TlsConfig;

const AUTH: &[u8] = b"\0asm auth module";

async fn start_tls(cp: &ControlPlane, dir: &Path, ca: &Ca) -> ServerHandle {
    let (cert, key) = leaf(
        ca,
        vec![
            dns("localhost"),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ],
    );
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let tls = TlsConfig {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: Some(dir.join("ca.pem")),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::serve(cp, listener, Some(&tls), None).await.unwrap()
}

/// Connects with a client certificate and subscribes as `namespace/name`.
async fn subscribe_tls(
    server: &ServerHandle,
    server_ca: &Ca,
    client_cert: (String, String),
    namespace: &str,
    name: &str,
) -> Result<TestProxy, tonic::Status> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server_ca.pem))
        .identity(Identity::from_pem(client_cert.0, client_cert.1))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", server.local_addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let mut client = FilterDistributionClient::new(channel);
    let mut proxy = subscribe_with(
        &mut client,
        SubscribeRequest {
            kind: Some(Kind::Hello(hello(namespace, name, &[], &[]))),
        },
    )
    .await?;
    // With TLS 1.3 a refused client certificate may only show on the first read.
    match tokio::time::timeout(WAIT, proxy.snapshots.message()).await {
        Ok(Ok(Some(snapshot))) => {
            // Put it back in reach of the caller by checking it here.
            assert!(!snapshot.filters.is_empty());
            Ok(proxy)
        }
        Ok(Ok(None)) => Err(tonic::Status::unavailable("stream ended")),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no answer within 5s"),
    }
}

#[tokio::test]
async fn mtls_serves_matching_identities_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("weft test CA");
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    let server = start_tls(&cp, dir.path(), &ca).await;

    // Right CA, DNS SAN `<name>.<namespace>`: served.
    let good = leaf(&ca, vec![dns("p1.default")]);
    subscribe_tls(&server, &ca, good.clone(), "default", "p1")
        .await
        .unwrap();

    // Right CA, SPIFFE ID for the namespace: served.
    let spiffe = leaf(
        &ca,
        vec![SanType::URI(
            "spiffe://cluster.local/ns/default/sa/edge"
                .try_into()
                .unwrap(),
        )],
    );
    subscribe_tls(&server, &ca, spiffe, "default", "p2")
        .await
        .unwrap();

    // Right CA, but the hello claims another proxy: PermissionDenied naming both.
    let denied = subscribe_tls(&server, &ca, good, "default", "p9")
        .await
        .err()
        .expect("a mismatched identity is refused");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("DNS:p1.default"),
        "{}",
        denied.message()
    );
    assert!(denied.message().contains("\"p9\""), "{}", denied.message());

    // Another CA: refused at the handshake.
    let other = new_ca("someone else's CA");
    let stranger = leaf(&other, vec![dns("p1.default")]);
    let refused = subscribe_tls(&server, &ca, stranger, "default", "p1")
        .await
        .err()
        .expect("a certificate from another CA is refused");
    assert_ne!(refused.code(), Code::Ok);
    // rustls' alert, from the handshake: the stream never reached the service.
    assert!(format!("{refused:?}").contains("UnknownCA"), "{refused:?}");

    let connected: Vec<_> = cp.proxies().into_iter().map(|p| p.identity.name).collect();
    assert_eq!(connected, ["p1", "p2"]);
    server.shutdown().await;
}
