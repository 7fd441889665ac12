//! Validation before rollout: the control plane compiles a filter's module and runs its
//! `configure` with the new config in its own wasm runtime (the proxy's, with the same time
//! budget and memory limit) before any proxy sees it. A module that does not compile or a
//! config the filter rejects never leaves the control plane.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_runtime::metrics::FilterMetrics;
use weft_runtime::policy::limits as filter_limits;
use weft_runtime::{
    FailurePolicy as ProxyFailurePolicy, FilterSpec, Isolation, LoadError, Module, Runtime,
    RuntimeOptions,
};

use crate::control_plane::lock;
use crate::definition::FilterSettings;

/// Compiled modules kept for later checks, by digest. Beyond this many the cache starts over:
/// compiling again is slower, never wrong.
const MAX_CACHED_MODULES: usize = 64;

/// Why a filter was refused before rollout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The bytes are not a weft filter component this runtime can run.
    #[error("{0}")]
    Module(String),
    /// The filter's `configure` refused the config, trapped or ran past its budget.
    #[error("{0}")]
    Config(String),
}

impl Rejection {
    /// The reason of the status condition: `ModuleInvalid` or `ConfigRejected`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Module(_) => "ModuleInvalid",
            Self::Config(_) => "ConfigRejected",
        }
    }
}

/// A wasm runtime of the control plane's own, for checking filters. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    modules: Mutex<HashMap<String, Arc<Module>>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox with its own engine; compiled modules are kept in memory only.
    pub fn new() -> Result<Self, String> {
        let runtime = Runtime::new(
            RuntimeOptions::without_cache(),
            Arc::new(FilterMetrics::new()),
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Compiles `module` (named `sha256`) and configures filter `name` with `settings` as a
    /// proxy would. Blocking: compiling takes from milliseconds to seconds, so async callers
    /// use [`check`](Self::check).
    pub fn check_blocking(
        &self,
        name: &str,
        sha256: &str,
        module: &[u8],
        settings: &FilterSettings,
    ) -> Result<(), Rejection> {
        let module = self.module(sha256, module)?;
        let config: serde_json::Value = if settings.config_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&settings.config_json)
                .map_err(|e| Rejection::Config(format!("config is not JSON: {e}")))?
        };
        let time_budget = match settings.time_budget_ms {
            0 => filter_limits::DEFAULT_TIME_BUDGET,
            ms => Duration::from_millis(ms.into()),
        };
        let max_memory = match settings.max_memory_bytes {
            0 => filter_limits::DEFAULT_MAX_MEMORY,
            bytes => bytes,
        };
        let loaded = self.inner.runtime.load_filter(FilterSpec {
            name,
            module,
            config: &config,
            failure_policy: ProxyFailurePolicy::FailClosed,
            // Per-request instances: nothing is kept after the check.
            isolation: Isolation::PerRequest,
            time_budget,
            max_memory_bytes: usize::try_from(max_memory).unwrap_or(usize::MAX),
        });
        match loaded {
            Ok(_) => Ok(()),
            Err(LoadError::Rejected(message)) => Err(Rejection::Config(format!(
                "the filter's configure rejected the config: {message}"
            ))),
            Err(e @ LoadError::Failed(_)) => Err(Rejection::Config(e.to_string())),
            Err(e) => Err(Rejection::Module(e.to_string())),
        }
    }

    /// [`check_blocking`](Self::check_blocking) on the blocking thread pool.
    pub async fn check(
        &self,
        name: String,
        sha256: String,
        module: bytes::Bytes,
        settings: FilterSettings,
    ) -> Result<(), Rejection> {
        let sandbox = self.clone();
        tokio::task::spawn_blocking(move || {
            sandbox.check_blocking(&name, &sha256, &module, &settings)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Rejection::Module(format!(
                "the check of the module stopped: {e}"
            )))
        })
    }

    fn module(&self, sha256: &str, bytes: &[u8]) -> Result<Arc<Module>, Rejection> {
        if let Some(module) = lock(&self.inner.modules).get(sha256) {
            return Ok(module.clone());
        }
        let label = PathBuf::from(format!("sha256:{sha256}"));
        let module = self
            .inner
            .runtime
            .module_from_bytes(&label, bytes)
            .map_err(|e| Rejection::Module(e.to_string()))?;
        let mut modules = lock(&self.inner.modules);
        if modules.len() >= MAX_CACHED_MODULES {
            modules.clear();
        }
        modules.insert(sha256.to_owned(), module.clone());
        Ok(module)
    }
}
