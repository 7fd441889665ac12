//! Module fetchers against real servers on 127.0.0.1: a Docker distribution registry (Debian's
//! `docker-registry`, installed with apt-get when missing) over HTTP and over TLS with htpasswd
//! users, and an HTTPS server of our own (hyper and rustls) with a test CA.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use weft_controlplane::definition::WasmFilterSpec;
use weft_controlplane::fetch::{self, FetchError, FetchOptions, Fetcher};

#[path = "support/registry.rs"]
mod registry;

use registry::{Ca, Registry, RegistrySetup, install_crypto_provider, new_ca, server_cert};

/// A module as far as the fetchers care: they check digests, not Wasm.
const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module that is not validated by the fetcher";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// The message of the error `result` must be, after checking the error's reason.
fn refused(result: Result<fetch::Fetched, FetchError>, reason: &str) -> String {
    let error = fetch_error(result);
    assert_eq!(error.reason(), reason, "{error}");
    error.to_string()
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
    let message = refused(
        fetcher.fetch("default", &oci_spec(&reference, None)).await,
        "FetchFailed",
    );
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
    let message = refused(
        fetcher.fetch("default", &oci_spec(&reference, None)).await,
        "FetchFailed",
    );
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
    let message = refused(
        fetcher.fetch("default", &oci_spec(&reference, None)).await,
        "FetchFailed",
    );
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
    let message = refused(
        fetcher.fetch("default", &oci_spec(&reference, None)).await,
        "FetchFailed",
    );
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
    let message = refused(
        Fetcher::new(None, other)
            .unwrap()
            .fetch("default", &oci_spec(&reference, None))
            .await,
        "FetchFailed",
    );
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
    let message = refused(
        Fetcher::new(None, options)
            .unwrap()
            .fetch("default", &oci_spec(&reference, None))
            .await,
        "FetchFailed",
    );
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
    let message = refused(fetcher.fetch("team-a", &spec).await, "FetchFailed");
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
    let message = refused(fetcher.fetch("default", &spec).await, "FetchFailed");
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
    let message = refused(
        fetcher.fetch("default", &url_spec(&url, None)).await,
        "FetchFailed",
    );
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
    let message = refused(
        fetcher
            .fetch("default", &url_spec(&url, Some(&wrong)))
            .await,
        "DigestMismatch",
    );
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
    let message = refused(
        fetcher.fetch("default", &url_spec(&url, None)).await,
        "FetchFailed",
    );
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
        let message = refused(
            fetcher.fetch("default", &url_spec(&url, None)).await,
            "FetchFailed",
        );
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
    let message = refused(
        fetcher.fetch("default", &url_spec(url, None)).await,
        "FetchFailed",
    );
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
    let result = fetcher.fetch("default", &url_spec(&url, None)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = refused(result, "FetchFailed");
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
