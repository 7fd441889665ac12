//! Module fetchers for filters defined in a cluster: the bytes of a `WasmFilter`'s module from
//! an `https://` URL, an OCI registry or a ConfigMap key, checked against `spec.sha256`.
//!
//! [`Fetcher`] is built once and shared by the controller's tasks. Every fetch is bounded in
//! time ([`FetchOptions::timeout`]) and in size ([`FetchOptions::max_module_bytes`], enforced
//! while the bytes arrive, never after buffering them), and every failure names where the module
//! was to come from. [`push`] publishes a module as a Wasm OCI artifact, for tests and tools.
//!
//! ```no_run
//! # async fn run(spec: weft_controlplane::definition::WasmFilterSpec) -> Result<(), weft_controlplane::fetch::FetchError> {
//! use weft_controlplane::fetch::{FetchOptions, Fetcher};
//!
//! let fetcher = Fetcher::new(None, FetchOptions::default())?;
//! let fetched = fetcher.fetch("default", &spec).await?;
//! println!("{} bytes, sha256 {}", fetched.bytes.len(), fetched.sha256);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client as OciClient, Reference};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::definition::{ConfigMapKey, WasmFilterSpec, is_sha256};

/// Layer media types that hold a Wasm module: the CNCF Wasm OCI artifact type, and the two
/// used by earlier tools (wasm-to-oci, Solo's WebAssembly Hub).
pub const WASM_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];
/// The config media type of the artifacts [`push`] writes (the CNCF Wasm OCI artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of the artifacts [`push`] writes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

const USER_AGENT: &str = concat!("weft-controlplane/", env!("CARGO_PKG_VERSION"));

/// How modules are fetched.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// PEM CA certificates trusted for https URLs and registries besides the built-in roots
    /// (the platform's). May hold several certificates; empty for none.
    pub extra_roots_pem: Vec<u8>,
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Largest module accepted, in bytes (default 64 MiB).
    pub max_module_bytes: u64,
    /// Timeout for one fetch (default 60 s).
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            extra_roots_pem: Vec::new(),
            insecure_registries: Vec::new(),
            max_module_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A module's bytes and their digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The module.
    pub bytes: Bytes,
    /// The sha256 digest of `bytes`, 64 lowercase hex digits.
    pub sha256: String,
}

impl fmt::Debug for Fetched {
    // A module is megabytes of binary; its length and digest say which one it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Why a module could not be had. [`FetchError::reason`] is the reason of the `Ready`
/// condition; the Display text is its message.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The bytes arrived but their digest is not `spec.sha256`.
    #[error(
        "the module from {from} has sha256 {actual}, but spec.sha256 is {expected}; if the module \
         was changed on purpose, set spec.sha256 to {actual}, otherwise find out who replaced it"
    )]
    DigestMismatch {
        /// Where the module came from, like `oci://registry.example.com/filters/authz:1.0`.
        from: String,
        /// `spec.sha256`.
        expected: String,
        /// The digest of the bytes that arrived.
        actual: String,
    },
    /// Anything else: network, TLS, HTTP status, registry error, missing ConfigMap, key or
    /// Secret, a module too large, a malformed URL or reference, a timeout. Also what [`push`]
    /// and [`Fetcher::new`] return, with `from` naming the destination or the bad option.
    #[error("{from}: {message}")]
    Fetch {
        /// Where the module was to come from, like `https://host/authz.wasm`.
        from: String,
        /// What went wrong, with the underlying causes.
        message: String,
    },
    /// The spec names no source the cluster can serve (`file`, none, or several), or its
    /// `sha256` is not a digest.
    #[error("{message}")]
    Source {
        /// What is wrong and what to write instead.
        message: String,
    },
}

impl FetchError {
    /// `DigestMismatch`, `FetchFailed` or `InvalidSource`: the reason of the status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::Fetch { .. } => "FetchFailed",
            Self::Source { .. } => "InvalidSource",
        }
    }
}

fn failure(from: &str, message: impl Into<String>) -> FetchError {
    FetchError::Fetch {
        from: from.to_owned(),
        message: message.into(),
    }
}

/// Fetches module bytes for `WasmFilter` specs. Cheap to clone (an `Arc` inside) and shareable
/// across tasks.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    kube: Option<kube::Client>,
    options: FetchOptions,
    /// The extra roots, parsed once: every OCI fetch builds its own registry client from them.
    roots: Vec<CertificateDer<'static>>,
    /// One HTTPS client for every URL: connections are pooled, and no credentials are kept.
    https: reqwest::Client,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("kube", &self.inner.kube.is_some())
            .field("options", &self.inner.options)
            .finish()
    }
}

/// The module source a spec names, borrowed from it.
enum ModuleRef<'a> {
    Url(&'a str),
    Oci(&'a str),
    ConfigMap(&'a ConfigMapKey),
}

impl ModuleRef<'_> {
    /// Where the module comes from, for messages.
    fn describe(&self, namespace: &str) -> String {
        match self {
            Self::Url(url) => redact_url(url),
            Self::Oci(reference) => format!("oci://{}", strip_oci(reference)),
            Self::ConfigMap(key) => {
                format!("ConfigMap {namespace}/{} key {}", key.name, key.key)
            }
        }
    }
}

/// The one source of `spec` a cluster can serve.
fn module_ref(spec: &WasmFilterSpec) -> Result<ModuleRef<'_>, FetchError> {
    let module = &spec.module;
    let kinds = module.kinds();
    if kinds.len() > 1 {
        return Err(FetchError::Source {
            message: format!(
                "spec.module: give exactly one module source; found {}",
                kinds.join(", ")
            ),
        });
    }
    if let Some(url) = &module.url {
        Ok(ModuleRef::Url(url))
    } else if let Some(reference) = &module.oci {
        Ok(ModuleRef::Oci(reference))
    } else if let Some(key) = &module.config_map {
        Ok(ModuleRef::ConfigMap(key))
    } else if module.file.is_some() {
        Err(FetchError::Source {
            message: "spec.module.file is for the directory source; in a cluster give url, oci \
                      or configMap"
                .to_owned(),
        })
    } else {
        Err(FetchError::Source {
            message: "spec.module names no source; give url, oci or configMap".to_owned(),
        })
    }
}

impl Fetcher {
    /// A fetcher with `options`. `kube` is needed for configMap modules and OCI pull secrets;
    /// with `None` those fail with a clear error. Fails when `extra_roots_pem` holds no
    /// readable certificate.
    pub fn new(kube: Option<kube::Client>, options: FetchOptions) -> Result<Self, FetchError> {
        install_crypto_provider();
        let roots = parse_roots(&options.extra_roots_pem)?;
        let https = reqwest::Client::builder()
            .https_only(true)
            .tls_certs_merge(reqwest_roots(&roots)?)
            .timeout(options.timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| {
                failure(
                    "FetchOptions",
                    format!("cannot build the HTTPS client: {}", chain(&e)),
                )
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                kube,
                options,
                roots,
                https,
            }),
        })
    }

    /// Fetches the module of `spec` for a filter in `namespace`, verifies it against
    /// `spec.sha256` when given, and returns its bytes and their sha256 (lowercase hex).
    pub async fn fetch(
        &self,
        namespace: &str,
        spec: &WasmFilterSpec,
    ) -> Result<Fetched, FetchError> {
        let source = module_ref(spec)?;
        let expected = match &spec.sha256 {
            Some(sha) if !is_sha256(sha) => {
                return Err(FetchError::Source {
                    message: format!(
                        "spec.sha256 {sha:?} is not a sha256 digest; expected 64 lowercase hex \
                         digits (as printed by `sha256sum`)"
                    ),
                });
            }
            sha => sha.as_deref(),
        };
        let from = source.describe(namespace);
        let timeout = self.inner.options.timeout;
        let fetching = async {
            match &source {
                ModuleRef::Url(url) => self.fetch_url(&from, url).await,
                ModuleRef::Oci(reference) => {
                    let secret = spec.pull_secret.as_deref();
                    self.fetch_oci(&from, namespace, reference, secret, expected)
                        .await
                }
                ModuleRef::ConfigMap(key) => self.fetch_config_map(&from, namespace, key).await,
            }
        };
        let bytes = tokio::time::timeout(timeout, fetching)
            .await
            .map_err(|_| {
                failure(
                    &from,
                    format!(
                        "the fetch timed out after {}",
                        humantime::format_duration(timeout)
                    ),
                )
            })??;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = expected
            && expected != sha256
        {
            return Err(FetchError::DigestMismatch {
                from,
                expected: expected.to_owned(),
                actual: sha256,
            });
        }
        Ok(Fetched { bytes, sha256 })
    }

    async fn fetch_url(&self, from: &str, url: &str) -> Result<Bytes, FetchError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| failure(from, format!("not a valid URL: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(failure(
                from,
                format!(
                    "only https:// URLs are fetched, not {}://; serve the module over HTTPS or \
                     push it to an OCI registry",
                    parsed.scheme()
                ),
            ));
        }
        // The URL is in `from` already, and may hold a password.
        let response = self.inner.https.get(parsed).send().await.map_err(|e| {
            let message = chain(&e.without_url());
            let hint = tls_hint(&message, false);
            failure(from, format!("{message}{hint}"))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(
                from,
                format!("the server answered {status}, not 2xx"),
            ));
        }
        let limit = self.inner.options.max_module_bytes;
        let announced = response.content_length();
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(reqwest::Error::without_url));
        read_limited(announced, body, limit)
            .await
            .map_err(|e| failure(from, e))
    }

    async fn fetch_oci(
        &self,
        from: &str,
        namespace: &str,
        reference: &str,
        pull_secret: Option<&str>,
        expected: Option<&str>,
    ) -> Result<Bytes, FetchError> {
        let reference = parse_reference(reference).map_err(|e| failure(from, e))?;
        let auth = match pull_secret {
            None => RegistryAuth::Anonymous,
            Some(secret) => self
                .registry_auth(namespace, secret, reference.registry())
                .await
                .map_err(|e| failure(from, e))?,
        };
        let denied = match pull_secret {
            None => "give credentials with spec.pullSecret".to_owned(),
            Some(secret) => format!(
                "check the credentials for {} in pull secret {namespace}/{secret}",
                reference.registry()
            ),
        };
        let client =
            oci_client(&self.inner.roots, &self.inner.options).map_err(|e| failure(from, e))?;
        let (manifest, _digest) = client
            .pull_image_manifest(&reference, &auth)
            .await
            .map_err(|e| failure(from, oci_message("cannot read the manifest", &e, &denied)))?;
        let mut layer = wasm_layer(&manifest).map_err(|e| failure(from, e))?;
        if let (Some(expected), Some(actual)) = (expected, layer.digest.strip_prefix("sha256:"))
            && expected != actual
        {
            // The registry verifies the layer against this digest on download; no need to
            // download bytes that cannot be accepted.
            return Err(FetchError::DigestMismatch {
                from: from.to_owned(),
                expected: expected.to_owned(),
                actual: actual.to_owned(),
            });
        }
        let limit = self.inner.options.max_module_bytes;
        if u64::try_from(layer.size).is_ok_and(|size| size > limit) {
            return Err(failure(
                from,
                format!(
                    "the manifest gives the module layer a size of {} bytes, more than the limit \
                     of {limit} bytes",
                    layer.size
                ),
            ));
        }
        // Foreign-layer URLs would send us to hosts other than the registry.
        layer.urls = None;
        let blob = client
            .pull_blob_stream(&reference, &layer)
            .await
            .map_err(|e| {
                failure(
                    from,
                    oci_message("cannot download the module layer", &e, &denied),
                )
            })?;
        // The stream checks the layer digest at its end and fails there on a mismatch.
        read_limited(blob.content_length, blob.stream, limit)
            .await
            .map_err(|e| {
                failure(
                    from,
                    format!("downloading the module layer {}: {e}", layer.digest),
                )
            })
    }

    /// Credentials for `registry` from the dockerconfigjson Secret `namespace/name`.
    async fn registry_auth(
        &self,
        namespace: &str,
        name: &str,
        registry: &str,
    ) -> Result<RegistryAuth, String> {
        let what = format!("pull secret {namespace}/{name}");
        let Some(kube) = &self.inner.kube else {
            return Err(format!(
                "reading the {what} needs a Kubernetes client, and this control plane has none"
            ));
        };
        let secrets = kube::Api::<Secret>::namespaced(kube.clone(), namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|e| {
                kube_message(&format!("cannot read the {what}"), "secrets", namespace, &e)
            })?
            .ok_or_else(|| format!("the {what} does not exist"))?;
        let data = secret.data.unwrap_or_default();
        let (key, json) = [".dockerconfigjson", ".dockercfg"]
            .into_iter()
            .find_map(|key| data.get(key).map(|value| (key, &value.0)))
            .ok_or_else(|| {
                format!(
                    "the {what} (type {}) has neither a .dockerconfigjson nor a .dockercfg key; \
                     keys present: {}",
                    secret.type_.as_deref().unwrap_or("unset"),
                    list(data.keys())
                )
            })?;
        let credentials = parse_docker_config(json, key == ".dockercfg")
            .map_err(|e| format!("the {what}, key {key}: {e}"))?;
        match find_credentials(&credentials, registry) {
            Some(Ok((user, password))) => Ok(RegistryAuth::Basic(user, password)),
            Some(Err(e)) => Err(format!("the {what}, entry for {registry}: {e}")),
            None => Err(format!(
                "the {what} has no credentials for registry {registry}; it has entries for: {}",
                list(credentials.keys())
            )),
        }
    }

    async fn fetch_config_map(
        &self,
        from: &str,
        namespace: &str,
        key: &ConfigMapKey,
    ) -> Result<Bytes, FetchError> {
        let Some(kube) = &self.inner.kube else {
            return Err(failure(
                from,
                "reading a ConfigMap needs a Kubernetes client, and this control plane has none",
            ));
        };
        let config_maps = kube::Api::<ConfigMap>::namespaced(kube.clone(), namespace);
        let config_map = config_maps
            .get_opt(&key.name)
            .await
            .map_err(|e| {
                failure(
                    from,
                    kube_message("cannot read the ConfigMap", "configmaps", namespace, &e),
                )
            })?
            .ok_or_else(|| {
                failure(
                    from,
                    format!("ConfigMap {namespace}/{} does not exist", key.name),
                )
            })?;
        let binary = config_map.binary_data.unwrap_or_default();
        let text = config_map.data.unwrap_or_default();
        let bytes = match (binary.get(&key.key), text.get(&key.key)) {
            (Some(value), _) => Bytes::from(value.0.clone()),
            (None, Some(value)) => Bytes::from(value.clone().into_bytes()),
            (None, None) => {
                let keys: std::collections::BTreeSet<&String> =
                    binary.keys().chain(text.keys()).collect();
                return Err(failure(
                    from,
                    format!(
                        "ConfigMap {namespace}/{} has no key {:?} in binaryData or data; keys \
                         present: {}",
                        key.name,
                        key.key,
                        list(keys)
                    ),
                ));
            }
        };
        let limit = self.inner.options.max_module_bytes;
        if bytes.len() as u64 > limit {
            return Err(failure(
                from,
                format!(
                    "the module is {} bytes, more than the limit of {limit} bytes",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }
}

/// Pushes `module` to `reference` (with or without `oci://`) as a Wasm OCI artifact: config
/// media type `application/vnd.wasm.config.v0+json`, one layer `application/wasm`. Returns the
/// manifest digest (`sha256:...`). `auth` is a user name and password for the registry.
pub async fn push(
    reference: &str,
    module: &[u8],
    auth: Option<(String, String)>,
    options: &FetchOptions,
) -> Result<String, FetchError> {
    const DENIED: &str = "check the user name and password";
    install_crypto_provider();
    let to = format!("oci://{}", strip_oci(reference));
    let pushing = async {
        let reference = parse_reference(reference)?;
        let roots = parse_roots(&options.extra_roots_pem).map_err(|e| e.to_string())?;
        let client = oci_client(&roots, options)?;
        let auth = match auth {
            Some((user, password)) => RegistryAuth::Basic(user, password),
            None => RegistryAuth::Anonymous,
        };
        client
            .store_auth_if_needed(reference.resolve_registry(), &auth)
            .await;

        let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(module)));
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
        })
        .to_string()
        .into_bytes();
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        let manifest = OciImageManifest {
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
            config: OciDescriptor {
                media_type: WASM_CONFIG_MEDIA_TYPE.to_owned(),
                digest: config_digest.clone(),
                size: config.len() as i64,
                ..OciDescriptor::default()
            },
            layers: vec![OciDescriptor {
                media_type: WASM_LAYER_MEDIA_TYPE.to_owned(),
                digest: layer_digest.clone(),
                size: module.len() as i64,
                ..OciDescriptor::default()
            }],
            ..OciImageManifest::default()
        };
        // Serialized here, not by the client, so that the digest returned is that of the
        // bytes the registry stores.
        let body = serde_json::to_vec(&manifest).map_err(|e| format!("manifest: {e}"))?;
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));

        client
            .push_blob(&reference, Bytes::copy_from_slice(module), &layer_digest)
            .await
            .map_err(|e| oci_message("cannot upload the module layer", &e, DENIED))?;
        client
            .push_blob(&reference, config, &config_digest)
            .await
            .map_err(|e| oci_message("cannot upload the config", &e, DENIED))?;
        client
            .push_manifest_raw(
                &reference,
                body,
                http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
            )
            .await
            .map_err(|e| oci_message("cannot upload the manifest", &e, DENIED))?;
        Ok::<_, String>(manifest_digest)
    };
    let pushed = tokio::time::timeout(options.timeout, pushing)
        .await
        .map_err(|_| {
            format!(
                "push timed out after {}",
                humantime::format_duration(options.timeout)
            )
        })
        .and_then(|result| result);
    pushed.map_err(|message| FetchError::Fetch { from: to, message })
}

/// rustls needs a process-wide crypto provider, since reqwest is built without one. Another
/// part of the process may have installed one already; that one is as good.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, FetchError> {
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

fn reqwest_roots(
    roots: &[CertificateDer<'static>],
) -> Result<Vec<reqwest::Certificate>, FetchError> {
    roots
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der).map_err(|e| failure("extra_roots_pem", chain(&e)))
        })
        .collect()
}

/// A registry client of its own for one fetch or push: oci-client keeps the first credentials
/// it is given for a registry, and those of one namespace's pull secret must not serve another.
fn oci_client(
    roots: &[CertificateDer<'static>],
    options: &FetchOptions,
) -> Result<OciClient, String> {
    let insecure = options
        .insecure_registries
        .iter()
        .map(|registry| normalize_registry(registry))
        .collect();
    let config = ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure),
        extra_root_certificates: roots
            .iter()
            .map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.to_vec(),
            })
            .collect(),
        platform_resolver: Some(Box::new(wasm_platform)),
        connect_timeout: Some(options.timeout),
        read_timeout: Some(options.timeout),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    };
    // `Client::new` would fall back to a default configuration, dropping our roots, on error.
    OciClient::try_from(config)
        .map_err(|e| format!("cannot build the registry client: {}", chain(&e)))
}

/// In an image index, the entry for the `wasm` architecture.
fn wasm_platform(entries: &[oci_client::manifest::ImageIndexEntry]) -> Option<String> {
    entries
        .iter()
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == "wasm")
        })
        .map(|entry| entry.digest.clone())
}

/// The one layer of `manifest` that holds a Wasm module.
fn wasm_layer(manifest: &OciImageManifest) -> Result<OciDescriptor, String> {
    let wasm: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|layer| WASM_LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()))
        .collect();
    match wasm.as_slice() {
        [layer] => Ok((*layer).clone()),
        [] => Err(format!(
            "the artifact has no Wasm layer (media type {}); its layers are: {}; push the \
             module as a Wasm OCI artifact",
            WASM_LAYER_MEDIA_TYPES.join(" or "),
            if manifest.layers.is_empty() {
                "none".to_owned()
            } else {
                list(manifest.layers.iter().map(|l| &l.media_type))
            }
        )),
        several => Err(format!(
            "the artifact has {} Wasm layers ({}); expected exactly one",
            several.len(),
            list(several.iter().map(|l| &l.digest))
        )),
    }
}

/// `reference` without its `oci://` prefix.
fn strip_oci(reference: &str) -> &str {
    let reference = reference.trim();
    reference.strip_prefix("oci://").unwrap_or(reference)
}

fn parse_reference(reference: &str) -> Result<Reference, String> {
    let stripped = strip_oci(reference);
    if stripped.is_empty() {
        return Err(
            "empty OCI reference; give one like registry.example.com/filters/authz:1.0".to_owned(),
        );
    }
    Reference::try_from(stripped).map_err(|e| {
        format!(
            "{stripped:?} is not an OCI reference like registry.example.com/filters/authz:1.0: {e}"
        )
    })
}

/// A registry as oci-client names it (`host` or `host:port`), from how a person may write it:
/// with a scheme, a path or a trailing slash.
fn normalize_registry(registry: &str) -> String {
    let registry = registry.trim();
    let registry = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let host = registry.split('/').next().unwrap_or(registry);
    host.to_ascii_lowercase()
}

/// The registry names Docker Hub goes by in config files.
const DOCKER_HUB: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Whether the config-file key `key` (`host`, `host:port`, `https://host/v1/`, ...) names
/// `registry` (`host` or `host:port`, as in a reference).
fn registry_matches(key: &str, registry: &str) -> bool {
    let key = normalize_registry(key);
    let registry = registry.to_ascii_lowercase();
    if key == registry {
        return true;
    }
    if DOCKER_HUB.contains(&key.as_str()) && DOCKER_HUB.contains(&registry.as_str()) {
        return true;
    }
    // `host` covers `host:443`, the port https implies.
    registry.strip_suffix(":443") == Some(key.as_str())
}

/// One `auths` entry of a Docker config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
struct DockerAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
}

/// The entries of a `.dockerconfigjson` (`{"auths": {...}}`) or, with `legacy`, a `.dockercfg`
/// (the map itself), by registry key.
fn parse_docker_config(json: &[u8], legacy: bool) -> Result<BTreeMap<String, DockerAuth>, String> {
    #[derive(serde::Deserialize)]
    struct ConfigJson {
        #[serde(default)]
        auths: BTreeMap<String, DockerAuth>,
    }
    if legacy {
        serde_json::from_slice(json).map_err(|e| format!("not a Docker config: {e}"))
    } else {
        serde_json::from_slice::<ConfigJson>(json)
            .map(|config| config.auths)
            .map_err(|e| format!("not a Docker config: {e}"))
    }
}

/// The user name and password for `registry` among `entries`, preferring an exact key.
fn find_credentials(
    entries: &BTreeMap<String, DockerAuth>,
    registry: &str,
) -> Option<Result<(String, String), String>> {
    let exact = entries.get(registry);
    let entry = exact.or_else(|| {
        entries
            .iter()
            .find(|(key, _)| registry_matches(key, registry))
            .map(|(_, entry)| entry)
    })?;
    Some(credentials(entry))
}

fn credentials(entry: &DockerAuth) -> Result<(String, String), String> {
    if let (Some(user), Some(password)) = (&entry.username, &entry.password)
        && !user.is_empty()
    {
        return Ok((user.clone(), password.clone()));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Err("neither username and password nor auth is set".to_owned());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auth is not base64: {e}"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8 text".to_owned())?;
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err("auth does not decode to user:password".to_owned()),
    }
}

/// Reads a body of at most `limit` bytes, failing as soon as more arrive (or are announced).
async fn read_limited<S, B, E>(
    announced: Option<u64>,
    stream: S,
    limit: u64,
) -> Result<Bytes, String>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error + 'static,
{
    if let Some(length) = announced
        && length > limit
    {
        return Err(format!(
            "the module is {length} bytes (Content-Length), more than the limit of {limit} bytes"
        ));
    }
    let capacity = announced.unwrap_or(0).min(limit).min(16 * 1024 * 1024);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| chain(&e))?;
        let chunk = chunk.as_ref();
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(format!(
                "the module is larger than the limit of {limit} bytes"
            ));
        }
        body.extend_from_slice(chunk);
    }
    Ok(body.freeze())
}

/// An error and its causes, as one line. reqwest's own message is "error sending request";
/// what went wrong (a refused connection, an unknown certificate issuer) is in the sources.
/// Registries' error bodies end in newlines; a status condition reads best as one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let one_line = |e: &dyn std::error::Error| e.to_string().trim().replace('\n', " ");
    let mut text = one_line(error);
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = one_line(cause);
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `error` as a message; `denied` says what to do when the registry refuses the credentials
/// (or their absence).
fn oci_message(
    doing: &str,
    error: &oci_client::errors::OciDistributionError,
    denied: &str,
) -> String {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    // oci-client reports a refusal as `UnauthorizedError` when reading, but as a plain
    // `ServerError` with code 401 when uploading.
    let refused = match error {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => true,
        E::ServerError { code, .. } => matches!(code, 401 | 403),
        E::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    };
    let hint = match error {
        _ if refused => format!("; {denied}"),
        E::ImageManifestNotFoundError(_) => {
            "; an image index must have an entry for architecture `wasm`".to_owned()
        }
        _ => String::new(),
    };
    let message = chain(error);
    let tls = tls_hint(&message, true);
    format!("{doing}: {message}{hint}{tls}")
}

/// What to do about the TLS failures a person can fix, found in an error's text (reqwest
/// keeps rustls' error inside an I/O error, so the text is all there is).
fn tls_hint(message: &str, registry: bool) -> &'static str {
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

fn kube_message(doing: &str, resource: &str, namespace: &str, error: &kube::Error) -> String {
    let hint = match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "; the control plane's service account needs `get` on {resource} in namespace \
             {namespace}"
        ),
        _ => String::new(),
    };
    format!("{doing}: {}{hint}", chain(error))
}

/// `url` with any password replaced, for messages and status conditions.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::definition::ModuleSource;

    fn entry(user: &str, password: &str) -> DockerAuth {
        DockerAuth {
            username: Some(user.to_owned()),
            password: Some(password.to_owned()),
            auth: None,
        }
    }

    #[test]
    fn dockerconfigjson_username_and_password() {
        let json = br#"{"auths":{"registry.example.com":{"username":"u","password":"p"}}}"#;
        let entries = parse_docker_config(json, false).unwrap();
        assert_eq!(
            find_credentials(&entries, "registry.example.com"),
            Some(Ok(("u".to_owned(), "p".to_owned())))
        );
    }

    #[test]
    fn dockerconfigjson_auth_field_is_decoded() {
        // base64("robot$ci:pa:ss") — the password may itself hold colons.
        let auth = base64::engine::general_purpose::STANDARD.encode("robot$ci:pa:ss");
        let json = format!(r#"{{"auths":{{"https://127.0.0.1:5000/v2/":{{"auth":"{auth}"}}}}}}"#);
        let entries = parse_docker_config(json.as_bytes(), false).unwrap();
        assert_eq!(
            find_credentials(&entries, "127.0.0.1:5000"),
            Some(Ok(("robot$ci".to_owned(), "pa:ss".to_owned())))
        );
    }

    #[test]
    fn dockercfg_is_the_map_itself() {
        let json = br#"{"quay.io":{"username":"u","password":"p","email":"x@y"}}"#;
        let entries = parse_docker_config(json, true).unwrap();
        assert_eq!(
            find_credentials(&entries, "quay.io"),
            Some(Ok(("u".to_owned(), "p".to_owned())))
        );
    }

    #[test]
    fn dockerconfigjson_errors() {
        assert!(parse_docker_config(b"not json", false).is_err());
        let entries = parse_docker_config(br#"{"auths":{"r.io":{}}}"#, false).unwrap();
        assert_eq!(
            find_credentials(&entries, "r.io"),
            Some(Err(
                "neither username and password nor auth is set".to_owned()
            ))
        );
        let entries = parse_docker_config(br#"{"auths":{"r.io":{"auth":"%%%"}}}"#, false).unwrap();
        assert!(matches!(find_credentials(&entries, "r.io"), Some(Err(e)) if e.contains("base64")));
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        let json = format!(r#"{{"auths":{{"r.io":{{"auth":"{no_colon}"}}}}}}"#);
        let entries = parse_docker_config(json.as_bytes(), false).unwrap();
        assert!(
            matches!(find_credentials(&entries, "r.io"), Some(Err(e)) if e.contains("user:password"))
        );
        assert_eq!(find_credentials(&entries, "other.io"), None);
    }

    #[test]
    fn registry_keys_match_as_docker_writes_them() {
        assert!(registry_matches(
            "registry.example.com",
            "registry.example.com"
        ));
        assert!(registry_matches(
            "https://registry.example.com",
            "registry.example.com"
        ));
        assert!(registry_matches(
            "https://registry.example.com/v2/",
            "registry.example.com"
        ));
        assert!(registry_matches(
            "Registry.Example.com",
            "registry.example.com"
        ));
        assert!(registry_matches("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(registry_matches("http://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(registry_matches(
            "registry.example.com",
            "registry.example.com:443"
        ));
        assert!(registry_matches("https://index.docker.io/v1/", "docker.io"));
        // A port names another registry on the same host.
        assert!(!registry_matches("127.0.0.1", "127.0.0.1:5000"));
        assert!(!registry_matches("127.0.0.1:5001", "127.0.0.1:5000"));
        assert!(!registry_matches("example.com", "registry.example.com"));
    }

    #[test]
    fn exact_key_wins_over_a_looser_match() {
        let mut entries = BTreeMap::new();
        entries.insert("https://r.io".to_owned(), entry("loose", "1"));
        entries.insert("r.io".to_owned(), entry("exact", "2"));
        assert_eq!(
            find_credentials(&entries, "r.io"),
            Some(Ok(("exact".to_owned(), "2".to_owned())))
        );
    }

    #[test]
    fn references_with_and_without_prefix() {
        assert_eq!(
            strip_oci("oci://127.0.0.1:5000/f/a:1"),
            "127.0.0.1:5000/f/a:1"
        );
        assert_eq!(strip_oci(" 127.0.0.1:5000/f/a:1 "), "127.0.0.1:5000/f/a:1");
        let reference = parse_reference("oci://127.0.0.1:5000/filters/authz:1.0").unwrap();
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(reference.repository(), "filters/authz");
        assert_eq!(reference.tag(), Some("1.0"));
        let bare = parse_reference("registry.example.com/authz@sha256:0123456789012345678901234567890123456789012345678901234567890123").unwrap();
        assert_eq!(bare.registry(), "registry.example.com");
        assert!(bare.digest().is_some());
        assert!(parse_reference("oci://").unwrap_err().contains("empty"));
        assert!(
            parse_reference("oci://Not A Reference")
                .unwrap_err()
                .contains("not an OCI reference")
        );
    }

    #[test]
    fn insecure_registries_are_normalized() {
        assert_eq!(normalize_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000/"),
            "127.0.0.1:5000"
        );
        assert_eq!(
            normalize_registry(" Registry.local:80 "),
            "registry.local:80"
        );
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://user:secret@host/x.wasm"),
            "https://user:REDACTED@host/x.wasm"
        );
        assert_eq!(redact_url("https://host/x.wasm"), "https://host/x.wasm");
    }

    fn spec(module: ModuleSource) -> WasmFilterSpec {
        serde_json::from_value::<WasmFilterSpec>(serde_json::json!({ "module": module })).unwrap()
    }

    #[test]
    fn sources_a_cluster_cannot_serve() {
        let file = module_ref(&spec(ModuleSource::file("x.wasm")))
            .err()
            .unwrap();
        assert_eq!(file.reason(), "InvalidSource");
        assert!(file.to_string().contains("directory source"), "{file}");
        let none = module_ref(&spec(ModuleSource::default())).err().unwrap();
        assert!(none.to_string().contains("no source"), "{none}");
        let several = ModuleSource {
            url: Some("https://h/x.wasm".to_owned()),
            oci: Some("r.io/x:1".to_owned()),
            ..ModuleSource::default()
        };
        let several = module_ref(&spec(several)).err().unwrap();
        assert!(several.to_string().contains("url, oci"), "{several}");
    }

    #[test]
    fn sources_are_described_for_messages() {
        let oci = ModuleRef::Oci("127.0.0.1:5000/filters/authz:1.0");
        assert_eq!(oci.describe("ns"), "oci://127.0.0.1:5000/filters/authz:1.0");
        let key = ConfigMapKey {
            name: "filters".to_owned(),
            key: "authz.wasm".to_owned(),
        };
        assert_eq!(
            ModuleRef::ConfigMap(&key).describe("default"),
            "ConfigMap default/filters key authz.wasm"
        );
    }

    #[test]
    fn wasm_layer_selection() {
        let layer = |media_type: &str, digest: &str| OciDescriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            ..OciDescriptor::default()
        };
        let manifest = |layers| OciImageManifest {
            layers,
            ..OciImageManifest::default()
        };
        let one = manifest(vec![
            layer("text/plain", "sha256:a"),
            layer("application/vnd.wasm.content.layer.v1+wasm", "sha256:b"),
        ]);
        assert_eq!(wasm_layer(&one).unwrap().digest, "sha256:b");
        let none = wasm_layer(&manifest(vec![layer("text/plain", "sha256:a")])).unwrap_err();
        assert!(
            none.contains("no Wasm layer") && none.contains("text/plain"),
            "{none}"
        );
        let two = manifest(vec![
            layer("application/wasm", "sha256:a"),
            layer("application/wasm", "sha256:b"),
        ]);
        assert!(wasm_layer(&two).unwrap_err().contains("2 Wasm layers"));
    }

    #[tokio::test]
    async fn bodies_are_cut_at_the_limit() {
        let chunks = |n: usize| {
            futures_util::stream::iter(
                (0..n).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&[0; 10]))),
            )
        };
        assert_eq!(read_limited(None, chunks(3), 30).await.unwrap().len(), 30);
        let over = read_limited(None, chunks(4), 30).await.unwrap_err();
        assert!(over.contains("larger than the limit of 30 bytes"), "{over}");
        let announced = read_limited(Some(31), chunks(0), 30).await.unwrap_err();
        assert!(
            announced.contains("31 bytes (Content-Length)"),
            "{announced}"
        );
    }

    #[test]
    fn extra_roots_must_be_certificates() {
        assert!(parse_roots(b"").unwrap().is_empty());
        assert!(parse_roots(b"\n").unwrap().is_empty());
        let err = parse_roots(b"hello").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn error_chains_read_as_one_line() {
        let inner = std::io::Error::other("{\"errors\":[]}\n");
        let outer = std::io::Error::other(Wrapped(inner));
        assert_eq!(chain(&outer), "request failed: {\"errors\":[]}");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("request failed")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn reasons() {
        let mismatch = FetchError::DigestMismatch {
            from: "https://h/x.wasm".to_owned(),
            expected: "a".repeat(64),
            actual: "b".repeat(64),
        };
        assert_eq!(mismatch.reason(), "DigestMismatch");
        let text = mismatch.to_string();
        assert!(
            text.contains("https://h/x.wasm")
                && text.contains(&"a".repeat(64))
                && text.contains(&"b".repeat(64))
        );
        assert_eq!(failure("x", "y").reason(), "FetchFailed");
    }
}
