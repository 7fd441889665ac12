//! Modules from OCI registries: the one Wasm layer of an artifact (or of an image index's
//! `wasm` entry), pulled with a registry client of its own per fetch.

use bytes::Bytes;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client as OciClient, Reference};
use rustls::pki_types::CertificateDer;

use super::error::{FetchError, chain, failure, list};
use super::trust::tls_hint;
use super::{FetchOptions, Fetcher, USER_AGENT, read_limited};

/// Layer media types that hold a Wasm module: the CNCF Wasm OCI artifact type, and the two
/// used by earlier tools (wasm-to-oci, Solo's WebAssembly Hub).
pub const WASM_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];

impl Fetcher {
    pub(super) async fn fetch_oci(
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
}

/// A registry client of its own for one fetch or push: oci-client keeps the first credentials
/// it is given for a registry, and those of one namespace's pull secret must not serve another.
pub(super) fn oci_client(
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
pub(super) fn strip_oci(reference: &str) -> &str {
    let reference = reference.trim();
    reference.strip_prefix("oci://").unwrap_or(reference)
}

pub(super) fn parse_reference(reference: &str) -> Result<Reference, String> {
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
pub(super) fn normalize_registry(registry: &str) -> String {
    let registry = registry.trim();
    let registry = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let host = registry.split('/').next().unwrap_or(registry);
    host.to_ascii_lowercase()
}

/// `error` as a message; `denied` says what to do when the registry refuses the credentials
/// (or their absence).
pub(super) fn oci_message(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
}
