//! Resolving one generation of a `WasmFilter`: check the spec, fetch and verify the module,
//! and run the filter's `configure` in the sandbox.

use bytes::Bytes;
use kube::ResourceExt;

use super::state::{Accepted, Problem};
use crate::catalog::CatalogFilter;
use crate::crd::WasmFilterResource;
use crate::definition::FilterSettings;
use crate::fetch::Fetcher;
use crate::sandbox::Sandbox;

/// Where a module comes from, as a cache key: the same source and digest give the same bytes.
pub(super) fn module_cache_key(object: &WasmFilterResource) -> String {
    let spec = &object.spec;
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{}",
        object.namespace().unwrap_or_default(),
        spec.module.url,
        spec.module.oci,
        spec.module.config_map,
        spec.pull_secret,
        spec.sha256.as_deref().unwrap_or("")
    )
}

/// Checks the spec, fetches and verifies the module (unless `cached`), and runs `configure`
/// in the sandbox.
pub(super) async fn resolve(
    object: &WasmFilterResource,
    cached: Option<(Bytes, String)>,
    fetcher: &Fetcher,
    sandbox: &Sandbox,
) -> Result<Accepted, Problem> {
    let generation = object.metadata.generation.unwrap_or(0);
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let problem = |reason: &'static str, message: String| Problem {
        generation,
        reason,
        message,
    };
    let settings: FilterSettings = object
        .spec
        .resolve()
        .map_err(|e| problem("InvalidSpec", e.to_string()))?;
    let (module, sha256) = match cached {
        Some(cached) => cached,
        None => {
            let fetched = fetcher
                .fetch(&namespace, &object.spec)
                .await
                .map_err(|e| problem(e.reason(), e.to_string()))?;
            (fetched.bytes, fetched.sha256)
        }
    };
    let qualified = format!("{namespace}/{name}");
    sandbox
        .check(qualified, sha256.clone(), module.clone(), settings.clone())
        .await
        .map_err(|e| problem(e.reason(), e.to_string()))?;
    Ok(Accepted {
        filter: CatalogFilter {
            namespace,
            name,
            generation,
            settings,
            module_sha256: sha256,
        },
        module,
    })
}
