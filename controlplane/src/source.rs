//! Where filter definitions come from. Each source resolves definitions and their modules into
//! a [`Catalog`](crate::Catalog) and publishes it whole.
//!
//! - [`dir`]: a local directory of YAML files and modules, watched for changes.
//! - Kubernetes (`WasmFilter` custom resources): not built yet.

pub mod dir;
