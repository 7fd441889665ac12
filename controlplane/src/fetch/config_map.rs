//! Modules from a key of a ConfigMap in the filter's namespace (`binaryData` or `data`).

use bytes::Bytes;
use k8s_openapi::api::core::v1::ConfigMap;

use super::Fetcher;
use super::error::{FetchError, failure, kube_message, list};
use crate::definition::ConfigMapKey;

impl Fetcher {
    pub(super) async fn fetch_config_map(
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
