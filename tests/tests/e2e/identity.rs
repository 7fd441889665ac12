//! Mesh identity: the control plane's `Identity.Certify` issuing workload certificates over a
//! real gRPC server on `127.0.0.1:0`, to callers proving who they are with a bootstrap token
//! (the directory source) or a service-account token reviewed by a (fake) Kubernetes API
//! server; then the control-plane channel itself on the issued certificate.
//!
//! The opt-in real-cluster version is `a_real_cluster_reviews_service_account_tokens` in
//! `kubernetes.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity as TlsIdentity};
use weft_api::v1::filter_distribution_client::FilterDistributionClient;
use weft_api::v1::identity_client::IdentityClient;
use weft_api::v1::{
    CertifyRequest, CertifyResponse, FetchModuleRequest, Hello, ProxyIdentity, Snapshot,
    SubscribeRequest, subscribe_request::Kind,
};
use weft_controlplane::Catalog;
use weft_controlplane::identity::{BootstrapTokens, Issuer, Reviewer, TokenReviewer};
use weft_controlplane::tls::TlsConfig;
use weft_identity::authority::{Authority, AuthoritySource};
use weft_identity::tls::{Credentials, WorkloadKey};
use weft_tests::control_plane::{TestCa, TestControlPlane};
use weft_tests::kube_fake::{API_AUDIENCE, FakeApiServer};

const WAIT: Duration = Duration::from_secs(10);
const TRUST_DOMAIN: &str = "cluster.local";
const LIFETIME: Duration = Duration::from_secs(3600);
const ORDERS_TOKEN: &str = "orders-token-0123456789abcdef";
const PAYMENTS_TOKEN: &str = "payments-token-0123456789abcdef";

fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A bootstrap token file granting `shop/orders` and `payments/api`.
fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens");
    std::fs::write(
        &path,
        format!(
            "# bootstrap tokens: <token> <namespace>/<service-account>\n\
             {ORDERS_TOKEN} shop/orders\n\n{PAYMENTS_TOKEN} payments/api\n"
        ),
    )
    .expect("token file");
    path
}

/// The authority in `ca_dir` (generated when empty), with `reviewer` in front of it.
fn issuer(ca_dir: &Path, reviewer: Reviewer) -> Arc<Issuer> {
    let (authority, _) = Authority::load(
        &AuthoritySource::Directory(ca_dir.to_owned()),
        TRUST_DOMAIN,
        LIFETIME,
    )
    .expect("the certificate authority");
    Arc::new(Issuer::new(authority, reviewer))
}

/// The directory source's configuration: the authority in `ca_dir`, bootstrap tokens.
fn bootstrap_issuer(ca_dir: &Path, tokens: &Path) -> Arc<Issuer> {
    issuer(
        ca_dir,
        Reviewer::Bootstrap(BootstrapTokens::load(tokens).expect("tokens")),
    )
}

async fn plaintext(addr: SocketAddr) -> Channel {
    tokio::time::timeout(
        WAIT,
        Channel::from_shared(format!("http://{addr}"))
            .expect("URI")
            .connect(),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// `Certify` for `namespace/service_account` with `token`, over `key`'s CSR.
async fn certify(
    channel: &Channel,
    key: &WorkloadKey,
    token: &str,
    namespace: &str,
    service_account: &str,
) -> Result<CertifyResponse, tonic::Status> {
    certify_csr(
        channel,
        key.csr_der().expect("CSR"),
        token,
        namespace,
        service_account,
    )
    .await
}

async fn certify_csr(
    channel: &Channel,
    csr_der: Vec<u8>,
    token: &str,
    namespace: &str,
    service_account: &str,
) -> Result<CertifyResponse, tonic::Status> {
    let request = CertifyRequest {
        csr_der,
        token: token.to_owned(),
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
    };
    tokio::time::timeout(WAIT, IdentityClient::new(channel.clone()).certify(request))
        .await
        .expect("Certify answers in time")
        .map(tonic::Response::into_inner)
}

fn refused(result: Result<CertifyResponse, tonic::Status>, code: Code) -> String {
    match result {
        Ok(answer) => panic!(
            "expected {code:?}, got a certificate for {}",
            answer.spiffe_id
        ),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status.message().to_owned()
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Checks an issued certificate as a proxy would before using it; returns its credentials.
fn check_issued(key: &WorkloadKey, answer: &CertifyResponse, want: &str) -> Credentials {
    let credentials = Credentials::new(
        key,
        &answer.certificate_chain_pem,
        &answer.trust_anchors_pem,
    )
    .expect("the chain is for this key and verifies against the anchors");
    assert_eq!(credentials.identity().as_str(), want);
    assert_eq!(answer.spiffe_id, want);
    let lifetime = LIFETIME.as_secs() as i64;
    let now = unix_now();
    assert!(
        (now + lifetime - 10..=now + lifetime + 1).contains(&answer.not_after_unix),
        "not_after {} is not about now ({now}) + {lifetime}s",
        answer.not_after_unix
    );
    let not_after = credentials
        .not_after()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    assert_eq!(
        not_after, answer.not_after_unix,
        "the certificate's own notAfter"
    );
    credentials
}

#[tokio::test]
async fn bootstrap_tokens_certify_the_workload_they_name_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = token_file(dir.path());
    let cp = TestControlPlane::start_with_identity(
        any_addr(),
        None,
        Some(bootstrap_issuer(&dir.path().join("ca"), &tokens)),
    )
    .await
    .expect("control plane");
    let channel = plaintext(cp.addr()).await;
    let key = WorkloadKey::generate().expect("key");

    let answer = certify(&channel, &key, ORDERS_TOKEN, "shop", "orders")
        .await
        .expect("the right token gets its identity");
    check_issued(&key, &answer, "spiffe://cluster.local/ns/shop/sa/orders");

    // A wrong token proves nothing, and the answer does not echo it.
    let wrong = "orders-token-0123456789abcdeX";
    let message = refused(
        certify(&channel, &key, wrong, "shop", "orders").await,
        Code::Unauthenticated,
    );
    assert!(!message.contains(wrong), "{message}");
    let message = refused(
        certify(&channel, &key, "", "shop", "orders").await,
        Code::Unauthenticated,
    );
    assert!(message.contains("empty"), "{message}");

    // Another service account's token: it proves who it is, which is not who is asked for.
    let message = refused(
        certify(&channel, &key, PAYMENTS_TOKEN, "shop", "orders").await,
        Code::PermissionDenied,
    );
    assert!(
        message.contains("\"api\"") && message.contains("\"payments\""),
        "{message}"
    );

    // A malformed CSR with the right token.
    let message = refused(
        certify_csr(
            &channel,
            b"not a CSR".to_vec(),
            ORDERS_TOKEN,
            "shop",
            "orders",
        )
        .await,
        Code::InvalidArgument,
    );
    assert!(message.contains("certificate signing request"), "{message}");
    // Not a Kubernetes name, before any credential check.
    let message = refused(
        certify(&channel, &key, ORDERS_TOKEN, "Shop", "orders").await,
        Code::InvalidArgument,
    );
    assert!(message.contains("namespace \"Shop\""), "{message}");
    let message = refused(
        certify(&channel, &key, ORDERS_TOKEN, "shop", "../orders").await,
        Code::InvalidArgument,
    );
    assert!(message.contains("service account"), "{message}");

    // The request size is bounded (a CSR is at most 16 KiB, a token a few KiB).
    let huge = "x".repeat(100 << 10);
    let status = certify(&channel, &key, &huge, "shop", "orders")
        .await
        .expect_err("an oversized request is refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");

    // A token added to the file works without a restart; one removed stops working.
    let fresh = "fresh-token-0123456789abcdef";
    let tmp = dir.path().join("tokens.tmp");
    std::fs::write(
        &tmp,
        format!("{fresh} shop/orders\n{PAYMENTS_TOKEN} payments/api\n"),
    )
    .expect("write");
    std::fs::rename(&tmp, &tokens).expect("rename");
    let again = WorkloadKey::generate().expect("key");
    let answer = certify(&channel, &again, fresh, "shop", "orders")
        .await
        .expect("the added token works");
    check_issued(&again, &answer, "spiffe://cluster.local/ns/shop/sa/orders");
    refused(
        certify(&channel, &key, ORDERS_TOKEN, "shop", "orders").await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn without_an_authority_certify_is_a_failed_precondition() {
    let cp = TestControlPlane::start_with_identity(any_addr(), None, None)
        .await
        .expect("control plane");
    let channel = plaintext(cp.addr()).await;
    let key = WorkloadKey::generate().expect("key");
    let message = refused(
        certify(&channel, &key, ORDERS_TOKEN, "shop", "orders").await,
        Code::FailedPrecondition,
    );
    assert!(message.contains("--identity-dir"), "{message}");
}

#[tokio::test]
async fn a_restarted_control_plane_keeps_its_trust_anchor() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = token_file(dir.path());
    let ca_dir = dir.path().join("ca");
    let mut cp = TestControlPlane::start_with_identity(
        any_addr(),
        None,
        Some(bootstrap_issuer(&ca_dir, &tokens)),
    )
    .await
    .expect("control plane");
    let key = WorkloadKey::generate().expect("key");
    let before = certify(
        &plaintext(cp.addr()).await,
        &key,
        ORDERS_TOKEN,
        "shop",
        "orders",
    )
    .await
    .expect("certified");
    let address = cp.addr();
    cp.stop().await;

    let restarted = TestControlPlane::start_with_identity(
        address,
        None,
        Some(bootstrap_issuer(&ca_dir, &tokens)),
    )
    .await
    .expect("restarted control plane");
    let other = WorkloadKey::generate().expect("key");
    let after = certify(
        &plaintext(restarted.addr()).await,
        &other,
        PAYMENTS_TOKEN,
        "payments",
        "api",
    )
    .await
    .expect("certified after the restart");
    assert_eq!(after.trust_anchors_pem, before.trust_anchors_pem);
    // The certificate issued before the restart verifies against the anchors served after.
    Credentials::new(
        &key,
        &before.certificate_chain_pem,
        &after.trust_anchors_pem,
    )
    .expect("an earlier certificate is still trusted");

    // Whereas an authority in another directory is another mesh.
    let stranger = bootstrap_issuer(&dir.path().join("other-ca"), &tokens);
    let error = Credentials::new(
        &key,
        &before.certificate_chain_pem,
        stranger.authority().trust_anchors_pem(),
    )
    .expect_err("another authority's anchors do not trust it");
    assert!(error.contains("does not verify"), "{error}");
}

#[tokio::test]
async fn service_account_tokens_are_checked_with_token_review() {
    let api = FakeApiServer::start().await;
    api.add_service_account_token("sa-token-shop-orders", "shop", "orders", &["weft"]);
    api.add_service_account_token("sa-token-payments-api", "payments", "api", &["weft"]);
    // A token for the API server itself, as a pod's default token is.
    api.add_service_account_token("sa-token-api-audience", "shop", "orders", &[API_AUDIENCE]);
    let dir = tempfile::tempdir().expect("dir");
    let reviewer = Reviewer::TokenReview(TokenReviewer::new(api.client(), "weft"));
    let cp = TestControlPlane::start_with_identity(
        any_addr(),
        None,
        Some(issuer(&dir.path().join("ca"), reviewer)),
    )
    .await
    .expect("control plane");
    let channel = plaintext(cp.addr()).await;
    let key = WorkloadKey::generate().expect("key");

    let answer = certify(&channel, &key, "sa-token-shop-orders", "shop", "orders")
        .await
        .expect("a service-account token for audience weft");
    check_issued(&key, &answer, "spiffe://cluster.local/ns/shop/sa/orders");
    let review = api
        .wait_for_request(|r| r.path.ends_with("/tokenreviews"), WAIT)
        .await;
    assert_eq!(review.method, "POST");
    assert_eq!(review.path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert_eq!(
        review.body["spec"]["audiences"],
        serde_json::json!(["weft"])
    );
    assert_eq!(review.body["spec"]["token"], "sa-token-shop-orders");

    let message = refused(
        certify(&channel, &key, "not-a-token", "shop", "orders").await,
        Code::Unauthenticated,
    );
    assert!(message.contains("invalid bearer token"), "{message}");
    let message = refused(
        certify(&channel, &key, "sa-token-payments-api", "shop", "orders").await,
        Code::PermissionDenied,
    );
    assert!(message.contains("\"payments\""), "{message}");
    let message = refused(
        certify(&channel, &key, "sa-token-api-audience", "shop", "orders").await,
        Code::Unauthenticated,
    );
    assert!(message.contains("audiences"), "{message}");

    // A token invalidated since (its pod is gone).
    api.revoke_token("sa-token-shop-orders");
    refused(
        certify(&channel, &key, "sa-token-shop-orders", "shop", "orders").await,
        Code::Unauthenticated,
    );

    // The API server refuses the review itself (RBAC): not the caller's fault, retry later.
    api.add_service_account_token("sa-token-shop-orders", "shop", "orders", &["weft"]);
    api.fail_next("POST", "tokenreviews", 403);
    let message = refused(
        certify(&channel, &key, "sa-token-shop-orders", "shop", "orders").await,
        Code::Unavailable,
    );
    assert!(message.contains("Kubernetes API"), "{message}");
    certify(&channel, &key, "sa-token-shop-orders", "shop", "orders")
        .await
        .expect("works again once the API server does");
}

#[tokio::test]
async fn a_token_review_that_hangs_is_unavailable_after_the_timeout() {
    // An "API server" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind(any_addr())
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let config = kube::Config::new(format!("http://{silent_addr}").parse().expect("URI"));
    let client = kube::Client::try_from(config).expect("client");
    let reviewer = Reviewer::TokenReview(
        TokenReviewer::new(client, "weft").with_timeout(Duration::from_millis(300)),
    );
    let dir = tempfile::tempdir().expect("dir");
    let cp = TestControlPlane::start_with_identity(
        any_addr(),
        None,
        Some(issuer(&dir.path().join("ca"), reviewer)),
    )
    .await
    .expect("control plane");
    let channel = plaintext(cp.addr()).await;
    let key = WorkloadKey::generate().expect("key");
    let started = tokio::time::Instant::now();
    let message = refused(
        certify(&channel, &key, "sa-token", "shop", "orders").await,
        Code::Unavailable,
    );
    assert!(message.contains("did not answer"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

/// Opens a Subscribe stream as `namespace/name` and waits for the first snapshot.
async fn subscribe(
    channel: &Channel,
    namespace: &str,
    name: &str,
) -> Result<Snapshot, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(SubscribeRequest {
        kind: Some(Kind::Hello(Hello {
            identity: Some(ProxyIdentity {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                labels: Default::default(),
            }),
            module_digests: Vec::new(),
            serving_version: 0,
        })),
    })
    .await
    .expect("queue the hello");
    let mut client = FilterDistributionClient::new(channel.clone());
    let first = tokio::time::timeout(WAIT, async {
        let mut snapshots = client
            .subscribe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        snapshots
            .message()
            .await?
            .ok_or_else(|| tonic::Status::unavailable("the stream ended without a snapshot"))
    })
    .await
    .expect("an answer in time");
    // Keep the stream open until the answer is read.
    drop(tx);
    first
}

async fn tls_channel(
    addr: SocketAddr,
    server_ca: &str,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .domain_name("localhost");
    if let Some((chain, key)) = client {
        tls = tls.identity(TlsIdentity::from_pem(chain, key));
    }
    tokio::time::timeout(
        WAIT,
        Channel::from_shared(format!("https://{addr}"))
            .expect("URI")
            .tls_config(tls)?
            .connect(),
    )
    .await
    .expect("connect in time")
}

#[tokio::test]
async fn the_control_plane_channel_runs_on_the_issued_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = token_file(dir.path());
    let server_ca = TestCa::new("control plane CA").expect("CA");
    let proxies_ca = TestCa::new("proxies CA").expect("CA");
    let (cert, key) = server_ca
        .leaf("server", &["127.0.0.1", "localhost"])
        .expect("server certificate");
    let tls = TlsConfig {
        cert,
        key,
        client_ca: Some(proxies_ca.ca_file().expect("CA file")),
    };
    let cp = TestControlPlane::start_with_identity(
        any_addr(),
        Some(&tls),
        Some(bootstrap_issuer(&dir.path().join("ca"), &tokens)),
    )
    .await
    .expect("control plane");
    cp.control_plane.publish(Catalog::default());
    let server_ca_pem = std::fs::read_to_string(server_ca.ca_file().expect("CA file")).expect("CA");

    // No certificate yet: the handshake lets the proxy in, for Certify only.
    let bare = tls_channel(cp.addr(), &server_ca_pem, None)
        .await
        .expect("a TLS connection without a client certificate");
    let status = subscribe(&bare, "shop", "orders-0")
        .await
        .expect_err("no subscription without a certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("present a client certificate"),
        "{status:?}"
    );
    let status = FilterDistributionClient::new(bare.clone())
        .fetch_module(FetchModuleRequest {
            identity: Some(ProxyIdentity {
                name: "orders-0".to_owned(),
                namespace: "shop".to_owned(),
                labels: Default::default(),
            }),
            sha256: "00".repeat(32),
        })
        .await
        .expect_err("no module without a certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let key = WorkloadKey::generate().expect("key");
    let answer = certify(&bare, &key, ORDERS_TOKEN, "shop", "orders")
        .await
        .expect("Certify over TLS without a client certificate");
    let credentials = check_issued(&key, &answer, "spiffe://cluster.local/ns/shop/sa/orders");

    // With the issued certificate: subscribed, and the control plane knows who it is.
    let mine = tls_channel(
        cp.addr(),
        &server_ca_pem,
        Some((credentials.chain_pem(), credentials.key_pem())),
    )
    .await
    .expect("a TLS connection with the workload certificate");
    let snapshot = subscribe(&mine, "shop", "orders-0")
        .await
        .expect("subscribed with the issued certificate");
    assert_eq!(snapshot.version, 1);
    // Registered before its first snapshot was sent.
    let status = cp.proxy("orders-0").expect("the proxy's status");
    assert_eq!(status.identity.namespace, "shop");
    assert_eq!(
        status.spiffe_id.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/orders")
    );
    // Claiming another namespace than its certificate's.
    let status = subscribe(&mine, "payments", "api-0")
        .await
        .expect_err("another namespace is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(cp.proxy("api-0").is_none());

    // A certificate from --client-ca still works beside the mesh's.
    let ca_certs = proxies_ca
        .client("edge-1", "default", &server_ca)
        .expect("client certificate");
    let (chain, ca_key) = (
        std::fs::read_to_string(&ca_certs.cert).expect("cert"),
        std::fs::read_to_string(&ca_certs.key).expect("key"),
    );
    let operator = tls_channel(
        cp.addr(),
        &server_ca_pem,
        Some((chain.as_str(), ca_key.as_str())),
    )
    .await
    .expect("a TLS connection with a --client-ca certificate");
    subscribe(&operator, "default", "edge-1")
        .await
        .expect("subscribed with a --client-ca certificate");
    assert_eq!(cp.proxy("edge-1").expect("status").spiffe_id, None);

    // Another mesh's workload certificate is not trusted.
    let stranger = bootstrap_issuer(&dir.path().join("other-ca"), &tokens);
    let other_key = WorkloadKey::generate().expect("key");
    let issued = stranger
        .authority()
        .issue(
            &other_key.csr_der().expect("CSR"),
            &weft_identity::SpiffeId::new(TRUST_DOMAIN, "shop", "orders").expect("id"),
        )
        .expect("issued by the other authority");
    let other = Credentials::new(
        &other_key,
        &issued.chain_pem,
        stranger.authority().trust_anchors_pem(),
    )
    .expect("credentials");
    let refused_outcome = match tls_channel(
        cp.addr(),
        &server_ca_pem,
        Some((other.chain_pem(), other.key_pem())),
    )
    .await
    {
        Err(e) => format!("{e:?}"),
        Ok(channel) => format!(
            "{:?}",
            subscribe(&channel, "shop", "orders-1")
                .await
                .expect_err("another mesh's certificate is refused")
        ),
    };
    // rustls' alert from the handshake: the request never reached a service. (Both anchors
    // have the same subject, so the server finds "an" issuer whose signature does not match:
    // DecryptError, where an unrelated CA gets UnknownCA.)
    assert!(
        refused_outcome.contains("received fatal alert: DecryptError")
            || refused_outcome.contains("UnknownCA"),
        "{refused_outcome}"
    );
    assert!(cp.proxy("orders-1").is_none());
}
