//! Module fetchers against real servers on 127.0.0.1: a Docker distribution registry (Debian's
//! `docker-registry`, installed with apt-get when missing) over HTTP and over TLS with htpasswd
//! users, and an HTTPS server of our own (hyper and rustls) with a test CA.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use oci_client::Client as OciClient;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::net::TcpListener;
use weft_controlplane::definition::WasmFilterSpec;
use weft_controlplane::fetch::{self, FetchError, FetchOptions, Fetcher};

/// A module as far as the fetchers care: they check digests, not Wasm.
const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module that is not validated by the fetcher";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn spec(module: serde_json::Value, sha256: Option<&str>) -> WasmFilterSpec {
    let mut spec = serde_json::json!({ "module": module });
    if let Some(sha) = sha256 {
        spec["sha256"] = sha.into();
    }
    serde_json::from_value(spec).unwrap()
}

fn oci_spec(reference: &str, sha256: Option<&str>) -> WasmFilterSpec {
    spec(serde_json::json!({ "oci": reference }), sha256)
}

fn url_spec(url: &str, sha256: Option<&str>) -> WasmFilterSpec {
    spec(serde_json::json!({ "url": url }), sha256)
}

/// The error of a fetch that must fail; its message is printed, for `--nocapture` readers.
fn fetch_error(result: Result<fetch::Fetched, FetchError>) -> FetchError {
    match result {
        Ok(fetched) => panic!("expected an error, fetched {fetched:?}"),
        Err(e) => {
            eprintln!("{}: {e}", e.reason());
            e
        }
    }
}

// ---- Certificates ----------------------------------------------------------------------------

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
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

/// A server certificate and key (PEM) for `127.0.0.1` and `localhost`, signed by `ca`.
fn server_cert(ca: &Ca) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().unwrap()),
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

// ---- The registry ----------------------------------------------------------------------------

/// `docker-registry` (Docker distribution 2.8, as Debian packages it): on the PATH, or installed
/// with apt-get, once per test binary.
fn registry_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = find_on_path("docker-registry") {
            return path;
        }
        let install = || {
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "docker-registry",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|status| status.success())
        };
        let installed = install()
            || (Command::new("apt-get")
                .arg("update")
                .status()
                .is_ok_and(|s| s.success())
                && install());
        match find_on_path("docker-registry") {
            Some(path) if installed => path,
            _ => panic!(
                "these tests need a Docker distribution registry, and `docker-registry` is not \
                 installed and apt-get could not install it; install it with `apt-get update && \
                 apt-get install -y --no-install-recommends docker-registry` (Debian/Ubuntu, as \
                 root)"
            ),
        }
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How a test registry serves.
#[derive(Default)]
struct RegistrySetup<'a> {
    /// The CA of the certificate to serve HTTPS with; plain HTTP without.
    tls: Option<&'a Ca>,
    /// htpasswd users; anonymous access without.
    users: Vec<(&'static str, &'static str)>,
}

/// A registry process on 127.0.0.1, killed on drop.
struct Registry {
    /// `127.0.0.1:<port>`, as references and `insecure_registries` name it.
    host: String,
    child: Child,
    dir: TempDir,
}

impl Registry {
    async fn start(setup: RegistrySetup<'_>) -> Self {
        // One start at a time within this binary: a port picked by binding port 0 is free only
        // until someone else binds it, and two of our registries must not race for one.
        static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _starting = STARTING.lock().await;
        install_crypto_provider();
        let binary = registry_binary();
        let dir = tempfile::tempdir().unwrap();
        // Lines under `http:`, and top-level sections, added to the generated config.
        let mut http_tls = String::new();
        let mut auth = String::new();
        if let Some(ca) = setup.tls {
            let (cert, key) = server_cert(ca);
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            http_tls = format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\n",
                dir.path().display()
            );
        }
        if !setup.users.is_empty() {
            let htpasswd: String = setup
                .users
                .iter()
                .map(|(user, password)| {
                    // Cost 4, the lowest: these passwords guard nothing.
                    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
                })
                .collect();
            std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: weft-test\n    path: {}/htpasswd\n",
                dir.path().display()
            );
        }
        let probe = {
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(2));
            if let Some(ca) = setup.tls {
                builder = builder.tls_certs_merge(
                    reqwest::Certificate::from_pem_bundle(ca.pem.as_bytes()).unwrap(),
                );
            }
            builder.build().unwrap()
        };
        let scheme = if setup.tls.is_some() { "https" } else { "http" };

        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let host = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: \
                 {dir}/data\nhttp:\n  addr: {host}\n{http_tls}{auth}",
                dir = dir.path().display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));

            let deadline = Instant::now() + Duration::from_secs(20);
            let url = format!("{scheme}://{host}/v2/");
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    if log.contains("address already in use") {
                        break; // Someone took the port: pick another.
                    }
                    panic!("the registry exited ({status}) before serving; its log:\n{log}");
                }
                // Any answer will do (401 with htpasswd): the registry is serving.
                if probe.get(&url).send().await.is_ok() {
                    return Self { host, child, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    panic!("the registry did not answer {url} within 20s; its log:\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("could not find a free port for the registry in 5 attempts");
    }

    /// The registry's log, for messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plain_options(registry: &Registry) -> FetchOptions {
    FetchOptions {
        insecure_registries: vec![registry.host.clone()],
        ..FetchOptions::default()
    }
}

// ---- OCI over plain HTTP ---------------------------------------------------------------------

#[tokio::test]
async fn pushed_module_is_fetched_back_by_tag_and_by_digest() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let options = plain_options(&registry);
    let reference = format!("oci://{}/filters/authz:1.0", registry.host);
    let manifest_digest = fetch::push(&reference, MODULE, None, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", registry.log()));
    assert!(manifest_digest.starts_with("sha256:"), "{manifest_digest}");

    let fetcher = Fetcher::new(None, options).unwrap();
    // Without and with the expected digest, with and without `oci://`.
    for spec in [
        oci_spec(&reference, None),
        oci_spec(&reference, Some(&sha256(MODULE))),
        oci_spec(&format!("{}/filters/authz:1.0", registry.host), None),
    ] {
        let fetched = fetcher.fetch("default", &spec).await.unwrap();
        assert_eq!(fetched.bytes, MODULE);
        assert_eq!(fetched.sha256, sha256(MODULE));
    }
    // The digest `push` returned names the manifest it pushed.
    let by_digest = format!("{}/filters/authz@{manifest_digest}", registry.host);
    let fetched = fetcher
        .fetch("default", &oci_spec(&by_digest, None))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, MODULE);
}

#[tokio::test]
async fn pushed_artifact_has_the_wasm_media_types() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let reference = format!("{}/filters/layout:1", registry.host);
    fetch::push(&reference, MODULE, None, &plain_options(&registry))
        .await
        .unwrap();
    let client = plain_oci_client(&registry);
    let (manifest, _) = client
        .pull_image_manifest(&reference.parse().unwrap(), &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(
        manifest.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(
        manifest.config.media_type,
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, "application/wasm");
    assert_eq!(
        manifest.layers[0].digest,
        format!("sha256:{}", sha256(MODULE))
    );
}

#[tokio::test]
async fn wrong_sha256_is_a_digest_mismatch() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let options = plain_options(&registry);
    let reference = format!("oci://{}/filters/authz:1.0", registry.host);
    fetch::push(&reference, MODULE, None, &options)
        .await
        .unwrap();
    let wrong = "0".repeat(64);
    let fetcher = Fetcher::new(None, options).unwrap();
    let error = fetch_error(
        fetcher
            .fetch("default", &oci_spec(&reference, Some(&wrong)))
            .await,
    );
    assert_eq!(error.reason(), "DigestMismatch");
    match &error {
        FetchError::DigestMismatch {
            from,
            expected,
            actual,
        } => {
            assert_eq!(from, &reference);
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256(MODULE));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&reference) && message.contains(&wrong) && message.contains("spec.sha256"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_tag_names_the_reference() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let options = plain_options(&registry);
    fetch::push(
        &format!("{}/filters/authz:1.0", registry.host),
        MODULE,
        None,
        &options,
    )
    .await
    .unwrap();
    let fetcher = Fetcher::new(None, options).unwrap();
    let reference = format!("oci://{}/filters/authz:2.0", registry.host);
    let error = fetch_error(fetcher.fetch("default", &oci_spec(&reference, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(message.contains(&reference), "{message}");
    assert!(message.contains("manifest unknown"), "{message}");
}

#[tokio::test]
async fn artifact_without_a_wasm_layer_is_refused() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let reference = format!("{}/filters/tarball:1", registry.host);
    let layer = ImageLayer::new(
        b"not a module".to_vec(),
        "application/vnd.oci.image.layer.v1.tar".to_owned(),
        None,
    );
    plain_oci_client(&registry)
        .push(
            &reference.parse().unwrap(),
            &[layer],
            Config::oci_v1(b"{}".to_vec(), None),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    let fetcher = Fetcher::new(None, plain_options(&registry)).unwrap();
    let error = fetch_error(fetcher.fetch("default", &oci_spec(&reference, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains(&reference)
            && message.contains("no Wasm layer")
            && message.contains("application/vnd.oci.image.layer.v1.tar"),
        "{message}"
    );
}

#[tokio::test]
async fn oci_module_over_the_size_limit_is_refused() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let reference = format!("{}/filters/authz:1.0", registry.host);
    fetch::push(&reference, MODULE, None, &plain_options(&registry))
        .await
        .unwrap();
    let options = FetchOptions {
        max_module_bytes: 16,
        ..plain_options(&registry)
    };
    let fetcher = Fetcher::new(None, options).unwrap();
    let error = fetch_error(fetcher.fetch("default", &oci_spec(&reference, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains("more than the limit of 16 bytes"),
        "{message}"
    );
}

#[tokio::test]
async fn plain_http_registry_not_listed_as_insecure_fails() {
    let registry = Registry::start(RegistrySetup::default()).await;
    let reference = format!("{}/filters/authz:1.0", registry.host);
    fetch::push(&reference, MODULE, None, &plain_options(&registry))
        .await
        .unwrap();
    // Without `insecure_registries` the fetcher speaks TLS to a plain-HTTP port.
    let fetcher = Fetcher::new(None, FetchOptions::default()).unwrap();
    let error = fetch_error(fetcher.fetch("default", &oci_spec(&reference, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains(&reference) && message.contains("insecure registries"),
        "{message}"
    );
}

fn plain_oci_client(registry: &Registry) -> OciClient {
    install_crypto_provider();
    OciClient::try_from(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.host.clone()]),
        ..ClientConfig::default()
    })
    .unwrap()
}

// ---- OCI over TLS, with users ----------------------------------------------------------------

#[tokio::test]
async fn tls_registry_is_trusted_through_extra_roots_only() {
    let ca = new_ca("weft test registry CA");
    let registry = Registry::start(RegistrySetup {
        tls: Some(&ca),
        ..RegistrySetup::default()
    })
    .await;
    let trusted = FetchOptions {
        extra_roots_pem: ca.pem.clone().into_bytes(),
        ..FetchOptions::default()
    };
    let reference = format!("oci://{}/filters/authz:1.0", registry.host);
    fetch::push(&reference, MODULE, None, &trusted)
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", registry.log()));
    let fetched = Fetcher::new(None, trusted)
        .unwrap()
        .fetch("default", &oci_spec(&reference, Some(&sha256(MODULE))))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, MODULE);

    // Another CA's certificate is not enough.
    let other = FetchOptions {
        extra_roots_pem: new_ca("another CA").pem.into_bytes(),
        ..FetchOptions::default()
    };
    let error = fetch_error(
        Fetcher::new(None, other)
            .unwrap()
            .fetch("default", &oci_spec(&reference, None))
            .await,
    );
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains(&reference)
            && message.contains("UnknownIssuer")
            && message.contains("extra trusted roots"),
        "{message}"
    );
}

#[tokio::test]
async fn registry_with_users_needs_credentials() {
    let ca = new_ca("weft test registry CA");
    let registry = Registry::start(RegistrySetup {
        tls: Some(&ca),
        users: vec![("ci", "s3cret:with colon")],
    })
    .await;
    let options = FetchOptions {
        extra_roots_pem: ca.pem.clone().into_bytes(),
        ..FetchOptions::default()
    };
    let reference = format!("oci://{}/filters/authz:1.0", registry.host);

    let wrong = Some(("ci".to_owned(), "wrong".to_owned()));
    for auth in [None, wrong] {
        let refused = fetch::push(&reference, MODULE, auth, &options)
            .await
            .err()
            .unwrap();
        eprintln!("{refused}");
        let message = refused.to_string();
        assert!(
            message.contains(&reference) && message.contains("check the user name and password"),
            "{message}"
        );
    }
    let right = Some(("ci".to_owned(), "s3cret:with colon".to_owned()));
    fetch::push(&reference, MODULE, right, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", registry.log()));

    // Pulling with credentials takes a pull secret, and so a cluster (the controller's tests);
    // without one the registry refuses, and the message says what to do.
    let error = fetch_error(
        Fetcher::new(None, options)
            .unwrap()
            .fetch("default", &oci_spec(&reference, None))
            .await,
    );
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains(&reference) && message.contains("spec.pullSecret"),
        "{message}"
    );
}

#[tokio::test]
async fn pull_secret_without_a_cluster_is_a_clear_error() {
    let fetcher = Fetcher::new(None, FetchOptions::default()).unwrap();
    let mut spec = oci_spec("oci://127.0.0.1:1/filters/authz:1.0", None);
    spec.pull_secret = Some("registry-creds".to_owned());
    let error = fetch_error(fetcher.fetch("team-a", &spec).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains("team-a/registry-creds") && message.contains("Kubernetes client"),
        "{message}"
    );
}

#[tokio::test]
async fn config_map_without_a_cluster_is_a_clear_error() {
    let fetcher = Fetcher::new(None, FetchOptions::default()).unwrap();
    let spec = spec(
        serde_json::json!({ "configMap": { "name": "filters", "key": "authz.wasm" } }),
        Some(&sha256(MODULE)),
    );
    let error = fetch_error(fetcher.fetch("default", &spec).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains("ConfigMap default/filters key authz.wasm")
            && message.contains("Kubernetes client"),
        "{message}"
    );
}

#[tokio::test]
async fn malformed_reference_is_refused() {
    let fetcher = Fetcher::new(None, FetchOptions::default()).unwrap();
    let error = fetch_error(
        fetcher
            .fetch("default", &oci_spec("oci://Registry/UPPER CASE", None))
            .await,
    );
    assert_eq!(error.reason(), "FetchFailed");
    assert!(
        error.to_string().contains("not an OCI reference"),
        "{error}"
    );
}

// ---- HTTPS -----------------------------------------------------------------------------------

type Body = BoxBody<Bytes, Infallible>;

/// An HTTPS server on 127.0.0.1 with a certificate from `ca`:
/// `/module.wasm` is [`MODULE`]; `/big.wasm` is 4 KiB with a Content-Length; `/stream.wasm` is
/// 8 KiB in chunks without one; anything else is 404.
async fn https_server(ca: &Ca) -> SocketAddr {
    install_crypto_provider();
    let (cert, key) = server_cert(ca);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Handshakes the client refuses end here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service_fn(route))
                    .await;
            });
        }
    });
    addr
}

async fn route(request: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match request.uri().path() {
        "/module.wasm" => Response::new(Full::new(Bytes::from_static(MODULE)).boxed()),
        "/big.wasm" => Response::new(Full::new(Bytes::from(vec![0u8; 4096])).boxed()),
        "/stream.wasm" => {
            let chunks = (0..8).map(|_| Ok(Frame::data(Bytes::from(vec![0u8; 1024]))));
            Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                chunks,
            ))))
        }
        _ => {
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"no such module")).boxed());
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

fn trusting(ca: &Ca) -> FetchOptions {
    FetchOptions {
        extra_roots_pem: ca.pem.clone().into_bytes(),
        ..FetchOptions::default()
    }
}

#[tokio::test]
async fn https_module_is_fetched_with_extra_roots() {
    let ca = new_ca("weft test HTTPS CA");
    let addr = https_server(&ca).await;
    // Several certificates in one PEM text: an unrelated CA first.
    let mut pem = new_ca("unrelated").pem.into_bytes();
    pem.extend_from_slice(ca.pem.as_bytes());
    let options = FetchOptions {
        extra_roots_pem: pem,
        ..FetchOptions::default()
    };
    let fetcher = Fetcher::new(None, options).unwrap();
    for host in [addr.to_string(), format!("localhost:{}", addr.port())] {
        let url = format!("https://{host}/module.wasm");
        let fetched = fetcher
            .fetch("default", &url_spec(&url, Some(&sha256(MODULE))))
            .await
            .unwrap();
        assert_eq!(fetched.bytes, MODULE);
        assert_eq!(fetched.sha256, sha256(MODULE));
    }
}

#[tokio::test]
async fn https_untrusted_certificate_fails() {
    let ca = new_ca("weft test HTTPS CA");
    let addr = https_server(&ca).await;
    let fetcher = Fetcher::new(None, FetchOptions::default()).unwrap();
    let url = format!("https://{addr}/module.wasm");
    let error = fetch_error(fetcher.fetch("default", &url_spec(&url, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains(&url)
            && message.contains("UnknownIssuer")
            && message.contains("extra trusted roots"),
        "{message}"
    );
}

#[tokio::test]
async fn https_wrong_sha256_is_a_digest_mismatch() {
    let ca = new_ca("weft test HTTPS CA");
    let addr = https_server(&ca).await;
    let fetcher = Fetcher::new(None, trusting(&ca)).unwrap();
    let url = format!("https://{addr}/module.wasm");
    let wrong = "f".repeat(64);
    let error = fetch_error(
        fetcher
            .fetch("default", &url_spec(&url, Some(&wrong)))
            .await,
    );
    assert_eq!(error.reason(), "DigestMismatch");
    let message = error.to_string();
    assert!(
        message.contains(&url) && message.contains(&sha256(MODULE)),
        "{message}"
    );
}

#[tokio::test]
async fn https_not_found_gives_the_status() {
    let ca = new_ca("weft test HTTPS CA");
    let addr = https_server(&ca).await;
    let fetcher = Fetcher::new(None, trusting(&ca)).unwrap();
    let url = format!("https://{addr}/missing.wasm");
    let error = fetch_error(fetcher.fetch("default", &url_spec(&url, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(
        message.contains(&url) && message.contains("404 Not Found"),
        "{message}"
    );
}

#[tokio::test]
async fn https_module_over_the_size_limit_is_refused() {
    let ca = new_ca("weft test HTTPS CA");
    let addr = https_server(&ca).await;
    let options = FetchOptions {
        max_module_bytes: 2048,
        ..trusting(&ca)
    };
    let fetcher = Fetcher::new(None, options).unwrap();
    // Announced by Content-Length, and found while streaming.
    for (path, says) in [
        ("big.wasm", "4096 bytes (Content-Length)"),
        ("stream.wasm", "larger than the limit of 2048 bytes"),
    ] {
        let url = format!("https://{addr}/{path}");
        let error = fetch_error(fetcher.fetch("default", &url_spec(&url, None)).await);
        assert_eq!(error.reason(), "FetchFailed");
        let message = error.to_string();
        assert!(
            message.contains(&url) && message.contains(says),
            "{message}"
        );
    }
    // Within the limit, the chunked body arrives whole.
    let fetcher = Fetcher::new(None, trusting(&ca)).unwrap();
    let url = format!("https://{addr}/stream.wasm");
    let fetched = fetcher
        .fetch("default", &url_spec(&url, None))
        .await
        .unwrap();
    assert_eq!(fetched.bytes.len(), 8192);
}

#[tokio::test]
async fn plain_http_url_is_refused() {
    let fetcher = Fetcher::new(None, FetchOptions::default()).unwrap();
    let url = "http://127.0.0.1:1/module.wasm";
    let error = fetch_error(fetcher.fetch("default", &url_spec(url, None)).await);
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(message.contains("only https:// URLs"), "{message}");
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections and never says a word, not even a TLS hello.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let options = FetchOptions {
        timeout: Duration::from_millis(300),
        ..FetchOptions::default()
    };
    let fetcher = Fetcher::new(None, options).unwrap();
    let url = format!("https://{addr}/module.wasm");
    let started = Instant::now();
    let error = fetch_error(fetcher.fetch("default", &url_spec(&url, None)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(error.reason(), "FetchFailed");
    let message = error.to_string();
    assert!(message.contains("timed out"), "{message}");
}

#[test]
fn unreadable_extra_roots_are_refused() {
    let options = FetchOptions {
        extra_roots_pem: b"-----BEGIN CERTIFICATE-----\nnot base64\n".to_vec(),
        ..FetchOptions::default()
    };
    let error = Fetcher::new(None, options).err().unwrap();
    assert!(error.to_string().contains("extra_roots_pem"), "{error}");
}
