//! Mesh identity between sidecars, with real sockets and real TLS: a control plane that issues
//! workload certificates (bootstrap tokens), sidecars that get them, speak mTLS to each other,
//! refuse what is not the mesh, tell filters who called, and rotate certificates under load.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tempfile::TempDir;
use weft_controlplane::identity::Issuer;
use weft_controlplane::identity::credentials::{BootstrapTokens, Reviewer};
use weft_controlplane::tls::TlsConfig;
use weft_identity::authority::{Authority, AuthoritySource};
use weft_tests::control_plane::{TestCa, TestControlPlane};
use weft_tests::{Reply, Scrape, TestProxy, Upstream, empty, get, guests, scrape, start_proxy};

use crate::filter;

const TRUST_DOMAIN: &str = "cluster.local";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const REVIEWS: &str = "spiffe://cluster.local/ns/shop/sa/reviews";
const BILLING: &str = "spiffe://cluster.local/ns/shop/sa/billing";

/// A control plane issuing certificates of `lifetime`, from an authority kept in a directory
/// (so that it can be restarted on the same keys), with one bootstrap token per service
/// account of namespace `shop`.
struct Mesh {
    cp: TestControlPlane,
    lifetime: Duration,
    dir: TempDir,
}

impl Mesh {
    async fn start(lifetime: Duration) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("tokens"),
            "# token namespace/service-account\n\
             token-of-orders-0123456789 shop/orders\n\
             token-of-reviews-0123456789 shop/reviews\n\
             token-of-billing-0123456789 shop/billing\n",
        )?;
        for sa in ["orders", "reviews", "billing"] {
            std::fs::write(
                dir.path().join(format!("token-{sa}")),
                format!("token-of-{sa}-0123456789\n"),
            )?;
        }
        let cp = Self::control_plane(dir.path(), lifetime, "127.0.0.1:0".parse()?).await?;
        Ok(Self { cp, lifetime, dir })
    }

    async fn control_plane(
        dir: &Path,
        lifetime: Duration,
        address: SocketAddr,
    ) -> anyhow::Result<TestControlPlane> {
        Self::control_plane_tls(dir, lifetime, address, None).await
    }

    async fn control_plane_tls(
        dir: &Path,
        lifetime: Duration,
        address: SocketAddr,
        tls: Option<&TlsConfig>,
    ) -> anyhow::Result<TestControlPlane> {
        let (authority, _) = Authority::load(
            &AuthoritySource::Directory(dir.join("ca")),
            TRUST_DOMAIN,
            lifetime,
        )?;
        let reviewer = Reviewer::Bootstrap(
            BootstrapTokens::load(dir.join("tokens")).map_err(anyhow::Error::msg)?,
        );
        let issuer = Arc::new(Issuer::new(authority, reviewer));
        TestControlPlane::start_with_identity(address, tls, Some(issuer)).await
    }

    /// Stops the control plane and starts a new one on the same address and authority.
    async fn restart_control_plane(&mut self) -> anyhow::Result<()> {
        let address = self.cp.addr();
        self.cp.stop().await;
        self.cp = Self::control_plane(self.dir.path(), self.lifetime, address).await?;
        Ok(())
    }

    /// The `control_plane` and `identity` sections of sidecar `name` running as service
    /// account `sa` of namespace `shop`.
    fn sidecar(&self, name: &str, sa: &str) -> String {
        format!(
            "admin: {{ address: 127.0.0.1:0 }}\n\
             control_plane: {{ address: \"http://{}\", name: {name}, namespace: shop, state_dir: {:?} }}\n\
             identity: {{ service_account: {sa}, token_file: {:?} }}\n",
            self.cp.addr(),
            self.dir.path().join(format!("state-{name}")),
            self.dir.path().join(format!("token-{sa}")),
        )
    }

    /// A client certificate signed by the mesh's own CA key (read from its files), with the
    /// URI SAN `san` (none: no SAN), valid now or expired an hour ago.
    fn leaf(&self, san: Option<&str>, expired: bool) -> anyhow::Result<ClientCert> {
        let ca = self.dir.path().join("ca");
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca.join("ca-key.pem"))?)?;
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(ca.join("ca.pem"))?, key)?;
        leaf_signed_by(&issuer, san, expired)
    }
}

/// A client certificate chain and key.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn leaf_signed_by(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    san: Option<&str>,
    expired: bool,
) -> anyhow::Result<ClientCert> {
    let mut params = rcgen::CertificateParams::default();
    if let Some(uri) = san {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into()?)];
    }
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let now = std::time::SystemTime::now();
    if expired {
        params.not_before = (now - Duration::from_secs(7200)).into();
        params.not_after = (now - Duration::from_secs(3600)).into();
    } else {
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(3600)).into();
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(ClientCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
    })
}

/// A certificate from a CA the mesh does not know.
fn stranger(san: &str) -> anyhow::Result<ClientCert> {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate()?;
    let issuer = rcgen::Issuer::new(params, key);
    leaf_signed_by(&issuer, Some(san), false)
}

/// Accepts any server certificate: these clients test what the *server* accepts.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `GET path` over TLS (HTTP/1.1) to `addr`, presenting `cert`; the server certificate the
/// server presented comes back with the reply.
async fn tls_get(
    addr: SocketAddr,
    cert: Option<&ClientCert>,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(Reply, Vec<CertificateDer<'static>>)> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut config = match cert {
        Some(c) => builder.with_client_auth_cert(c.chain.clone(), c.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("sidecar.test")?, tcp)
            .await
            .context("handshake")?;
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut request = Request::get(path).header("host", "sidecar.test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender.send_request(request.body(empty())?).await?;
        anyhow::Ok((Reply::read(response).await?, presented))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("no reply within 10s")?
}

/// Waits until the proxy's `/ready` answers 200.
async fn ready(proxy: &TestProxy) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(reply) = get(proxy.admin(), "/ready", &[]).await
            && reply.status == StatusCode::OK
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the proxy did not become ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(name, labels).unwrap_or(0.0)
}

/// Sidecar B: an inbound listener (`mode`) in front of `app`, the headers guest (it reports
/// the peer identity it saw as `x-weft-peer`), the authz filter (only `orders` may call;
/// everyone else gets 403) and the caller's identity forwarded in `x-weft-peer-identity`.
fn sidecar_b(mesh: &Mesh, mode: &str, app: SocketAddr) -> String {
    // A mesh-only policy: no tokens, the caller's mTLS identity decides.
    let authz = json!({"rules": {
        "deny": [{"from": {"not_principals": ["cluster.local/ns/shop/sa/orders"]}, "paths": [{"prefix": "/orders-only"}]}],
    }});
    format!(
        "{}listeners:\n  - name: inbound\n    address: 127.0.0.1:0\n    tls: {{ mode: {mode} }}\n    peer_identity_header: x-weft-peer-identity\n    filters: [{}, {}]\n    routes: [{{ name: app, upstream: app }}]\nupstreams:\n  - name: app\n    endpoints: [\"{app}\"]\n",
        mesh.sidecar("b", "reviews"),
        filter("headers", guests::HEADERS, ""),
        filter("authz", guests::AUTHZ, &format!("config: {authz}")),
    )
}

/// Sidecar A (`name`, service account `sa`): an outbound listener whose upstream is B's
/// inbound listener over mesh mTLS, expecting identity `expect` (none: any of the mesh).
fn sidecar_a(mesh: &Mesh, name: &str, sa: &str, b: SocketAddr, expect: Option<&str>) -> String {
    let identity = expect.map_or_else(String::new, |id| format!(", identity: \"{id}\""));
    format!(
        "{}listeners:\n  - name: outbound\n    address: 127.0.0.1:0\n    direction: outbound\n    routes: [{{ name: b, upstream: b }}]\nupstreams:\n  - name: b\n    endpoints: [\"{b}\"]\n    tls: {{ mode: mesh{identity} }}\n",
        mesh.sidecar(name, sa),
    )
}

#[tokio::test]
async fn sidecars_speak_mtls_and_filters_see_the_caller() -> anyhow::Result<()> {
    let mesh = Mesh::start(Duration::from_secs(3600)).await?;
    let app = Upstream::start().await?;
    let b = start_proxy(&sidecar_b(&mesh, "strict", app.addr())).await?;
    ready(&b).await?;
    let b_addr = b.listener("inbound");
    let a = start_proxy(&sidecar_a(&mesh, "a", "orders", b_addr, Some(REVIEWS))).await?;
    let other = start_proxy(&sidecar_a(&mesh, "c", "billing", b_addr, None)).await?;
    ready(&a).await?;
    ready(&other).await?;

    // orders → A → mTLS → B → app: B's filter sees A's identity, and so does the app (in the
    // header B forwards, not the copy the client tried to smuggle in).
    let reply = get(
        a.listener("outbound"),
        "/orders-only/7",
        &[(
            "x-weft-peer-identity",
            "spiffe://cluster.local/ns/shop/sa/admin",
        )],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-weft-peer"), Some(ORDERS));
    let seen = reply.seen()?;
    assert_eq!(seen.header_values("x-weft-peer-identity"), [ORDERS]);

    // billing is refused by B's authz with 403; other paths let it through, identified.
    let refused = get(other.listener("outbound"), "/orders-only/7", &[]).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    let allowed = get(other.listener("outbound"), "/public", &[]).await?;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.header("x-weft-peer"), Some(BILLING));

    // A sidecar that expects another identity of its upstream refuses B's certificate.
    let wrong = start_proxy(&sidecar_a(
        &mesh,
        "d",
        "orders",
        b_addr,
        Some("spiffe://cluster.local/ns/shop/sa/ratings"),
    ))
    .await?;
    ready(&wrong).await?;
    let reply = get(wrong.listener("outbound"), "/", &[]).await?;
    // As Envoy does for an upstream connection (or TLS) failure: 503.
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let scraped = scrape(wrong.admin()).await?;
    assert!(
        counter(
            &scraped,
            "weft_tls_handshakes_total",
            &[("side", "outbound"), ("result", "bad_identity")]
        ) >= 1.0,
        "{}",
        scraped.text
    );

    // Metrics: handshakes on both sides, a renewal, a certificate with about an hour left.
    let b_metrics = scrape(b.admin()).await?;
    assert!(
        counter(
            &b_metrics,
            "weft_tls_handshakes_total",
            &[("side", "inbound"), ("result", "ok")]
        ) >= 2.0
    );
    let a_metrics = scrape(a.admin()).await?;
    assert!(
        counter(
            &a_metrics,
            "weft_tls_handshakes_total",
            &[("side", "outbound"), ("result", "ok")]
        ) >= 1.0
    );
    assert_eq!(
        counter(
            &a_metrics,
            "weft_identity_renewals_total",
            &[("result", "ok")]
        ),
        1.0
    );
    let left = counter(&a_metrics, "weft_identity_certificate_expiry_seconds", &[]);
    assert!((3000.0..=3700.0).contains(&left), "expiry in {left} s");
    for proxy in [wrong, other, a, b] {
        proxy.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn strict_refuses_plaintext_strangers_expired_and_wrong_names() -> anyhow::Result<()> {
    let mesh = Mesh::start(Duration::from_secs(3600)).await?;
    let app = Upstream::start().await?;
    let b = start_proxy(&sidecar_b(&mesh, "strict", app.addr())).await?;
    ready(&b).await?;
    let addr = b.listener("inbound");

    // A workload certificate of the mesh gets in.
    let good = mesh.leaf(Some(ORDERS), false)?;
    let (reply, _) = tls_get(addr, Some(&good), "/", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-weft-peer"), Some(ORDERS));

    // Everything else has its connection closed, and is counted by reason.
    assert!(get(addr, "/", &[]).await.is_err(), "plaintext was served");
    let refused = [
        ("untrusted", Some(stranger(ORDERS)?)),
        ("expired", Some(mesh.leaf(Some(ORDERS), true)?)),
        (
            "bad_identity",
            Some(mesh.leaf(Some("spiffe://other.domain/ns/shop/sa/orders"), false)?),
        ),
        ("bad_identity", Some(mesh.leaf(None, false)?)),
        ("no_certificate", None),
    ];
    for (reason, cert) in &refused {
        let result = tls_get(addr, cert.as_ref(), "/", &[]).await;
        assert!(
            result.is_err(),
            "{reason}: served {:?}",
            result.map(|(r, _)| r.status)
        );
    }
    let scraped = scrape(b.admin()).await?;
    for reason in [
        "plaintext",
        "untrusted",
        "expired",
        "bad_identity",
        "no_certificate",
    ] {
        assert!(
            counter(
                &scraped,
                "weft_tls_handshakes_total",
                &[("side", "inbound"), ("result", reason)]
            ) >= 1.0,
            "{reason} not counted:\n{}",
            scraped.text
        );
    }
    // The proxy still serves the mesh.
    let (reply, _) = tls_get(addr, Some(&good), "/", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn permissive_serves_plaintext_and_mtls_on_one_port() -> anyhow::Result<()> {
    let mesh = Mesh::start(Duration::from_secs(3600)).await?;
    let app = Upstream::start().await?;
    let b = start_proxy(&sidecar_b(&mesh, "permissive", app.addr())).await?;
    ready(&b).await?;
    let addr = b.listener("inbound");

    let plain = get(addr, "/", &[("x-weft-peer-identity", ORDERS)]).await?;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header("x-weft-peer"), Some("plaintext"));
    // A plaintext client cannot pass for a mesh identity by sending the header itself.
    assert!(!plain.seen()?.has_header("x-weft-peer-identity"));
    // Principals never match a plaintext caller: the deny rule on `not_principals` holds.
    let denied = get(addr, "/orders-only/1", &[]).await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let good = mesh.leaf(Some(ORDERS), false)?;
    let (mtls, _) = tls_get(addr, Some(&good), "/orders-only/1", &[]).await?;
    assert_eq!(mtls.status, StatusCode::OK, "{}", mtls.text());
    assert_eq!(mtls.header("x-weft-peer"), Some(ORDERS));
    assert_eq!(mtls.seen()?.header_values("x-weft-peer-identity"), [ORDERS]);
    // A client that starts TLS must still finish mTLS: no certificate, no service.
    assert!(tls_get(addr, None, "/", &[]).await.is_err());
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rotation_under_load_fails_no_request() -> anyhow::Result<()> {
    // Certificates live 2 s and are renewed every second: several rotations, and a control
    // plane restart (on its persisted keys), while requests flow through the pair.
    let mut mesh = Mesh::start(Duration::from_secs(2)).await?;
    let app = Upstream::start().await?;
    let b = start_proxy(&sidecar_b(&mesh, "strict", app.addr())).await?;
    let a = start_proxy(&sidecar_a(
        &mesh,
        "a",
        "orders",
        b.listener("inbound"),
        Some(REVIEWS),
    ))
    .await?;
    ready(&b).await?;
    ready(&a).await?;
    let (_, first) = tls_get(
        b.listener("inbound"),
        Some(&mesh.leaf(Some(ORDERS), false)?),
        "/",
        &[],
    )
    .await?;

    let ok = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = a.listener("outbound");
    let mut load = Vec::new();
    for _ in 0..2 {
        let (ok, stop) = (ok.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match get(target, "/orders-only/1", &[]).await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) => failures.push(format!("{}: {}", reply.status, reply.text())),
                    Err(e) => failures.push(format!("{e:#}")),
                }
            }
            failures
        }));
    }
    let renewals =
        |scrape: &Scrape| counter(scrape, "weft_identity_renewals_total", &[("result", "ok")]);
    // Until each sidecar renewed at least twice.
    wait_for(Duration::from_secs(20), || async {
        Ok(
            renewals(&scrape(a.admin()).await?) >= 3.0
                && renewals(&scrape(b.admin()).await?) >= 3.0,
        )
    })
    .await?;
    mesh.restart_control_plane().await?;
    let before = renewals(&scrape(b.admin()).await?);
    // Renewals go on against the restarted control plane, which still trusts what it issued.
    wait_for(Duration::from_secs(20), || async {
        Ok(renewals(&scrape(a.admin()).await?) >= before + 2.0
            && renewals(&scrape(b.admin()).await?) >= before + 2.0)
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await?);
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        ok.load(Ordering::Relaxed) >= 20,
        "only {} requests",
        ok.load(Ordering::Relaxed)
    );
    // New handshakes get the renewed certificate, still from the same trust anchor.
    let (reply, last) = tls_get(
        b.listener("inbound"),
        Some(&mesh.leaf(Some(ORDERS), false)?),
        "/",
        &[],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_ne!(
        first, last,
        "B presented the same certificate after several rotations"
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_proxy_subscribes_with_its_workload_certificate() -> anyhow::Result<()> {
    // The control plane speaks TLS and requires client certificates: a proxy with no
    // certificate of its own gets one with Certify, then subscribes with it.
    let mesh = Mesh::start(Duration::from_secs(3600)).await?;
    let server_ca = TestCa::new("control plane CA")?;
    let (cert, key) = server_ca.leaf("server", &["127.0.0.1", "localhost"])?;
    let tls = TlsConfig {
        cert,
        key,
        client_ca: None,
    };
    let cp = Mesh::control_plane_tls(
        mesh.dir.path(),
        Duration::from_secs(3600),
        "127.0.0.1:0".parse()?,
        Some(&tls),
    )
    .await?;
    let app = Upstream::start().await?;
    let yaml = format!(
        "admin: {{ address: 127.0.0.1:0 }}\n\
         control_plane: {{ address: \"https://127.0.0.1:{}\", name: orders-0, namespace: shop, state_dir: {:?}, tls: {{ ca: {:?} }} }}\n\
         identity: {{ service_account: orders, token_file: {:?} }}\n\
         listeners: [{{ name: inbound, address: 127.0.0.1:0, routes: [{{ name: app, upstream: app }}] }}]\n\
         upstreams: [{{ name: app, endpoints: [\"{}\"] }}]\n",
        cp.addr().port(),
        mesh.dir.path().join("state-orders-0"),
        server_ca.ca_file()?,
        mesh.dir.path().join("token-orders"),
        app.addr(),
    );
    let proxy = start_proxy(&yaml).await?;
    ready(&proxy).await?;
    wait_for(Duration::from_secs(10), || async {
        Ok(cp.proxy("orders-0").is_some_and(|p| p.connected))
    })
    .await?;
    let status = cp.proxy("orders-0").context("the proxy's status")?;
    assert_eq!(status.spiffe_id.as_deref(), Some(ORDERS));
    let scraped = scrape(proxy.admin()).await?;
    assert_eq!(counter(&scraped, "weft_control_plane_connected", &[]), 1.0);
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_sidecar_is_not_ready_without_its_certificate() -> anyhow::Result<()> {
    let mesh = Mesh::start(Duration::from_secs(3600)).await?;
    // A token the control plane does not know: no certificate, never ready, and the renewal
    // failures are counted.
    std::fs::write(mesh.dir.path().join("token-orders"), "not-a-token")?;
    let app = Upstream::start().await?;
    let yaml = format!(
        "{}listeners:\n  - name: inbound\n    address: 127.0.0.1:0\n    tls: {{ mode: strict }}\n    routes: [{{ name: app, upstream: app }}]\nupstreams:\n  - name: app\n    endpoints: [\"{}\"]\n",
        mesh.sidecar("x", "orders"),
        app.addr()
    );
    let proxy = start_proxy(&yaml).await?;
    wait_for(Duration::from_secs(10), || async {
        Ok(counter(
            &scrape(proxy.admin()).await?,
            "weft_identity_renewals_total",
            &[("result", "error")],
        ) >= 1.0)
    })
    .await?;
    let reply = get(proxy.admin(), "/ready", &[]).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    // Once the credential is right, the next attempt succeeds and the proxy becomes ready.
    std::fs::write(
        mesh.dir.path().join("token-orders"),
        "token-of-orders-0123456789",
    )?;
    ready(&proxy).await?;
    let (reply, _) = tls_get(
        proxy.listener("inbound"),
        Some(&mesh.leaf(Some(BILLING), false)?),
        "/",
        &[],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK);
    proxy.shutdown().await;
    Ok(())
}

/// Polls `done` until it says yes, for at most `limit`.
async fn wait_for<F, Fut>(limit: Duration, done: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if done().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
