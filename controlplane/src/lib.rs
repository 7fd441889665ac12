//! weft's control plane: watches filter definitions and streams them to proxies.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`definition`]: the `WasmFilter` object (YAML today, a Kubernetes custom resource later)
//!   and its validation.
//! - [`source`]: where definitions come from. [`source::dir::DirSource`] watches a directory.
//! - [`fetch`]: module bytes for definitions in a cluster, from `https://` URLs, OCI registries
//!   and ConfigMaps.
//! - [`catalog`]: the resolved filters and module bytes, and which filters select a proxy.
//! - [`service`]: the `Service` definition of the directory source (ports, endpoints, traffic
//!   policy); [`services`]: the services catalog, apart from the filters, and how a stream
//!   finds what changed.
//! - [`ControlPlane`]: holds the current catalog and the status of every proxy.
//! - [`identity`]: the mesh's certificate authority as the gRPC `Identity` service: workload
//!   certificates for proxies whose credential (a bootstrap token, or a Kubernetes
//!   service-account token) proves the identity they ask for.
//! - [`discovery`]: the gRPC `Discovery` service: services and endpoints as incremental
//!   updates, with ACK/NACK.
//! - [`server`]: the gRPC `FilterDistribution`, `Discovery` and `Identity` services (see `api/proto`) over
//!   TCP, with optional mTLS ([`tls`]) binding proxy identities to client certificates.
//! - [`admin`]: a small HTTP endpoint for status (`/proxies`, `/filters`, `/identity`,
//!   `/healthz`).

pub mod admin;
pub mod catalog;
mod control_plane;
pub mod crd;
pub mod definition;
pub mod discovery;
mod error;
pub mod fetch;
pub mod identity;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod services;
pub mod source;
mod status;
mod stream;
pub mod tls;

pub use crate::catalog::{Catalog, CatalogFilter, SourceError};
pub use crate::control_plane::{ControlPlane, DEFAULT_ROOT_NAMESPACE};
pub use crate::error::Error;
pub use crate::services::{ServiceMap, service_key};
pub use crate::status::{
    DiscoveryStatus, ProxyStatus, ReportStatus, SentFilter, ServiceReportError,
};
pub use crate::stream::Distribution;
