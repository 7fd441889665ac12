//! TEMPORARY STUB (replaced by the fetch branch).
#![allow(missing_docs, unreachable_pub, dead_code)]
use crate::definition::WasmFilterSpec;
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub extra_roots_pem: Vec<u8>,
    pub insecure_registries: Vec<String>,
    pub max_module_bytes: u64,
    pub timeout: std::time::Duration,
}
impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            extra_roots_pem: vec![],
            insecure_registries: vec![],
            max_module_bytes: 64 << 20,
            timeout: std::time::Duration::from_secs(60),
        }
    }
}
#[derive(Clone)]
pub struct Fetcher {
    kube: Option<kube::Client>,
}
pub struct Fetched {
    pub bytes: bytes::Bytes,
    pub sha256: String,
}
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("x")]
    DigestMismatch {
        from: String,
        expected: String,
        actual: String,
    },
    #[error("y")]
    Fetch { from: String, message: String },
    #[error("z")]
    Source { message: String },
}
impl FetchError {
    pub fn reason(&self) -> &'static str {
        "FetchFailed"
    }
}
impl Fetcher {
    pub fn new(kube: Option<kube::Client>, _options: FetchOptions) -> Result<Self, FetchError> {
        Ok(Self { kube })
    }
    pub async fn fetch(
        &self,
        _namespace: &str,
        _spec: &WasmFilterSpec,
    ) -> Result<Fetched, FetchError> {
        Err(FetchError::Source {
            message: String::new(),
        })
    }
}
pub async fn push(
    _reference: &str,
    _module: &[u8],
    _auth: Option<(String, String)>,
    _options: &FetchOptions,
) -> Result<String, FetchError> {
    Err(FetchError::Source {
        message: String::new(),
    })
}
