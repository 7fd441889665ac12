//! [`ControlPlane`]: the current catalog and the status of every proxy, shared by the gRPC
//! streams, the sources and the admin endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;
use weft_api::v1::filter_distribution_server::FilterDistributionServer;

use crate::catalog::{Catalog, ProxyIdentity, SourceError};
use crate::status::ProxyStatus;
use crate::stream::Distribution;

/// The namespace whose filters select proxies of every namespace, unless told otherwise.
pub const DEFAULT_ROOT_NAMESPACE: &str = "weft-system";

/// A catalog with the version it was published as. Streams hold it by `Arc`, so publishing
/// never copies module bytes.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// 0 until the first publish; then increases by one per publish.
    pub(crate) version: u64,
    pub(crate) catalog: Catalog,
}

/// The control plane's shared state. Cloning is cheap and shares everything.
///
/// The catalog lives in a [`watch`] channel: every proxy stream wakes on a publish and reads
/// only the newest catalog, so a slow proxy skips intermediate versions instead of queueing
/// them. Locks are plain mutexes held for a few statements, never across an `.await`.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root_namespace: String,
    catalog: watch::Sender<Arc<Published>>,
    proxies: Mutex<HashMap<(String, String), ProxyEntry>>,
    next_stream: AtomicU64,
    source_errors: Mutex<Vec<SourceError>>,
    /// Bumped on every change of a proxy's status, for sources that report rollouts.
    proxy_changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct ProxyEntry {
    /// Which stream owns the entry: updates from a replaced stream are dropped.
    stream: u64,
    status: ProxyStatus,
}

impl ControlPlane {
    /// A control plane with an empty catalog (version 0; proxies get their first snapshot
    /// after the first [`publish`](Self::publish)). Filters in `root_namespace` select proxies
    /// of every namespace.
    pub fn new(root_namespace: impl Into<String>) -> Self {
        let (catalog, _) = watch::channel(Arc::new(Published::default()));
        Self {
            inner: Arc::new(Inner {
                root_namespace: root_namespace.into(),
                catalog,
                proxies: Mutex::new(HashMap::new()),
                next_stream: AtomicU64::new(1),
                source_errors: Mutex::new(Vec::new()),
                proxy_changes: watch::channel(0).0,
            }),
        }
    }

    /// The namespace whose filters select proxies of every namespace.
    pub fn root_namespace(&self) -> &str {
        &self.inner.root_namespace
    }

    /// Replaces the whole catalog and bumps the version. Streams compare what they would send
    /// with what they sent, so proxies whose filters did not change get nothing.
    ///
    /// The catalog is taken as is: a filter whose digest has no bytes in `modules` is sent
    /// without them (the proxy will reject it unless it holds the module), which is logged.
    pub fn publish(&self, catalog: Catalog) {
        for filter in &catalog.filters {
            if !catalog.modules.contains_key(&filter.module_sha256) {
                tracing::warn!(
                    filter = %filter.qualified_name(),
                    sha256 = %filter.module_sha256,
                    "published filter has no module bytes in the catalog"
                );
            }
        }
        let mut catalog = Some(catalog);
        self.inner.catalog.send_modify(|published| {
            let version = published.version + 1;
            *published = Arc::new(Published {
                version,
                catalog: catalog.take().unwrap_or_default(),
            });
        });
        tracing::debug!(version = self.version(), "catalog published");
    }

    /// The version of the current catalog; 0 before the first publish.
    pub fn version(&self) -> u64 {
        self.inner.catalog.borrow().version
    }

    /// The current catalog.
    pub fn catalog(&self) -> Catalog {
        self.inner.catalog.borrow().catalog.clone()
    }

    /// The status of every proxy that has subscribed, connected or not, sorted by namespace
    /// and name.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<ProxyStatus> = self
            .lock_proxies()
            .values()
            .map(|entry| entry.status.clone())
            .collect();
        all.sort_by(|a, b| {
            (&a.identity.namespace, &a.identity.name)
                .cmp(&(&b.identity.namespace, &b.identity.name))
        });
        all
    }

    /// The problems the source found with its inputs, as it last reported them.
    pub fn source_errors(&self) -> Vec<SourceError> {
        lock(&self.inner.source_errors).clone()
    }

    /// Replaces the source's problems (shown by the admin endpoint).
    pub fn set_source_errors(&self, errors: Vec<SourceError>) {
        *lock(&self.inner.source_errors) = errors;
    }

    /// The gRPC service, accepting messages up to [`weft_api::MAX_MESSAGE_BYTES`]. Its streams
    /// run until the proxy disconnects; [`server::serve`](crate::server::serve) also ends
    /// them on shutdown.
    pub fn service(&self) -> FilterDistributionServer<Distribution> {
        Distribution::new(self.clone(), None, false).into_server()
    }

    /// Changes whenever a proxy connects, disconnects, is sent a snapshot or answers one: a
    /// source that reports rollouts (the Kubernetes status) waits on it, then reads
    /// [`proxies`](Self::proxies).
    pub fn subscribe_proxy_changes(&self) -> watch::Receiver<u64> {
        self.inner.proxy_changes.subscribe()
    }

    fn proxies_changed(&self) {
        self.inner
            .proxy_changes
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe_catalog(&self) -> watch::Receiver<Arc<Published>> {
        self.inner.catalog.subscribe()
    }

    /// Records a new stream for `identity` (proven by a client certificate with SPIFFE ID
    /// `spiffe_id`, if any), replacing any earlier entry with the same namespace and name;
    /// returns the stream's id.
    pub(crate) fn register(
        &self,
        identity: ProxyIdentity,
        spiffe_id: Option<String>,
        serving_version: u64,
    ) -> u64 {
        let stream = self.inner.next_stream.fetch_add(1, Ordering::Relaxed);
        let key = (identity.namespace.clone(), identity.name.clone());
        let status = ProxyStatus {
            identity,
            spiffe_id,
            connected: true,
            connected_at: SystemTime::now(),
            disconnected_at: None,
            sent_version: 0,
            serving_version,
            last_report: None,
            filters: Vec::new(),
        };
        self.lock_proxies()
            .insert(key, ProxyEntry { stream, status });
        self.proxies_changed();
        stream
    }

    /// Applies `update` to the status of `identity` if `stream` still owns it.
    pub(crate) fn update_status(
        &self,
        identity: &ProxyIdentity,
        stream: u64,
        update: impl FnOnce(&mut ProxyStatus),
    ) {
        let key = (identity.namespace.clone(), identity.name.clone());
        let updated = match self.lock_proxies().get_mut(&key) {
            Some(entry) if entry.stream == stream => {
                update(&mut entry.status);
                true
            }
            _ => false,
        };
        if updated {
            self.proxies_changed();
        }
    }

    fn lock_proxies(&self) -> MutexGuard<'_, HashMap<(String, String), ProxyEntry>> {
        lock(&self.inner.proxies)
    }
}

pub(crate) use weft_runtime::lock;
