//! What the controller knows of every object, shared with the status writer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Key;
use super::restart::Restored;
use crate::catalog::CatalogFilter;
use crate::crd::WasmFilterResource;

/// What the controller knows of every object, shared with the status writer.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) entries: BTreeMap<Key, Entry>,
}

#[derive(Debug)]
pub(super) struct Entry {
    /// The object as last seen on the watch.
    pub(super) object: Arc<WasmFilterResource>,
    /// The generation in the catalog, if any ever passed.
    pub(super) accepted: Option<Accepted>,
    /// Why the newest generation was refused, if it was.
    pub(super) problem: Option<Problem>,
    /// The generation being resolved, if any.
    pub(super) resolving: Option<i64>,
    /// When to resolve again (failed fetches, `pullPolicy: Always`).
    pub(super) retry_at: Option<tokio::time::Instant>,
    /// The next retry delay after a failed fetch.
    pub(super) backoff: Duration,
    /// What the object's status had in service when this control plane first saw it (an
    /// earlier run wrote it): proxies run it until told otherwise.
    pub(super) restored: Option<Restored>,
}

#[derive(Debug, Clone)]
pub(super) struct Accepted {
    pub(super) filter: CatalogFilter,
    pub(super) module: Bytes,
}

/// A generation refused before rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub(super) generation: i64,
    /// `InvalidSpec`, `FetchFailed`, `DigestMismatch`, `InvalidSource`, `ModuleInvalid` or
    /// `ConfigRejected`.
    pub(super) reason: &'static str,
    pub(super) message: String,
}
