//! Module fetchers for filters defined in a cluster: the bytes of a `WasmFilter`'s module from
//! an `https://` URL, an OCI registry or a ConfigMap key, checked against `spec.sha256`.
//!
//! [`Fetcher`] is built once and shared by the controller's tasks. Every fetch is bounded in
//! time ([`FetchOptions::timeout`]) and in size ([`FetchOptions::max_module_bytes`], enforced
//! while the bytes arrive, never after buffering them), and every failure names where the module
//! was to come from. [`push`](fn@push) publishes a module as a Wasm OCI artifact, for the
//! `weft-controlplane push` command and for tests.
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

// One topic per file: the sources in `https`, `oci` (with registry `credentials` from pull
// secrets) and `config_map`; `trust` for extra CA roots and TLS hints; `error` for the error
// type and message helpers; `push` for publishing artifacts.
mod config_map;
mod credentials;
mod error;
mod https;
mod oci;
mod push;
mod trust;

pub use self::error::FetchError;
pub use self::oci::WASM_LAYER_MEDIA_TYPES;
pub use self::push::{WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, push};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::definition::{ConfigMapKey, WasmFilterSpec, is_sha256};

use self::error::{chain, failure};
use self::https::redact_url;
use self::oci::strip_oci;
use self::trust::{install_crypto_provider, parse_roots, reqwest_roots};

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
    /// The module as fetched: its size and digest are checked here; whether it is a filter
    /// that runs is the sandbox's business.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::definition::ModuleSource;

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
}
