//! Publishing a module as a Wasm OCI artifact: what `weft-controlplane push` does, and how
//! tests (here and in `weft-tests`) put modules into their registries. The fetchers never
//! push; this is the only writing side of the crate's registry code.

use bytes::Bytes;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};

use super::FetchOptions;
use super::error::FetchError;
use super::oci::{oci_client, oci_message, parse_reference, strip_oci};
use super::trust::{install_crypto_provider, parse_roots};

/// The config media type of the artifacts [`push`](fn@push) writes (the CNCF Wasm OCI
/// artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of the artifacts [`push`](fn@push) writes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

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
