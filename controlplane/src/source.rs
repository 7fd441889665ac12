//! Where filter definitions come from. Each source resolves definitions and their modules into
//! a [`Catalog`](crate::Catalog) and publishes it whole.
//!
//! - [`dir`]: a local directory of YAML files and modules, watched for changes.
//! - [`kubernetes`]: `WasmFilter` custom resources, with modules fetched, verified and
//!   checked before rollout, and status written back.

pub mod dir;
pub mod kubernetes;
