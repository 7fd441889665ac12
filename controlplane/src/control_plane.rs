//! [`ControlPlane`]: the current catalog and the status of every proxy, shared by the gRPC
//! streams, the sources and the admin endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;
use weft_api::v1::discovery_server::DiscoveryServer;
use weft_api::v1::filter_distribution_server::FilterDistributionServer;

use crate::catalog::{Catalog, ProxyIdentity, SourceError};
use crate::discovery::DiscoveryService;
use crate::services::{PublishedServices, ServiceMap};
use crate::status::{DiscoveryStatus, ProxyStatus};
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
    /// The services catalog, apart from the filters: an endpoint change never wakes a
    /// filter stream.
    services: watch::Sender<Arc<PublishedServices>>,
    /// The problems a source found with services, when it reports them apart from filters.
    service_errors: Mutex<Vec<SourceError>>,
    /// Every proxy's `Watch` stream, by namespace and name.
    discovery: Mutex<HashMap<(String, String), DiscoveryEntry>>,
    /// Bumped on every change of a proxy's status, for sources that report rollouts.
    proxy_changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct ProxyEntry {
    /// Which stream owns the entry: updates from a replaced stream are dropped.
    stream: u64,
    status: ProxyStatus,
}

#[derive(Debug)]
struct DiscoveryEntry {
    /// Which stream owns the entry.
    stream: u64,
    status: DiscoveryStatus,
    /// Set to `true` when a newer stream of the same proxy replaces this one, which then
    /// ends: one `Watch` stream per proxy.
    superseded: watch::Sender<bool>,
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
                services: watch::channel(Arc::new(PublishedServices::default())).0,
                service_errors: Mutex::new(Vec::new()),
                discovery: Mutex::new(HashMap::new()),
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

    /// The status of every proxy that has subscribed or watched services, connected or not,
    /// sorted by namespace and name. A proxy that only watches services shows with
    /// `connected: false` (no `Subscribe` stream) and its `discovery` status.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        let mut by_key: HashMap<(String, String), ProxyStatus> = self
            .lock_proxies()
            .iter()
            .map(|(key, entry)| (key.clone(), entry.status.clone()))
            .collect();
        for (key, entry) in lock(&self.inner.discovery).iter() {
            let discovery = Some(entry.status.clone());
            match by_key.get_mut(key) {
                Some(status) => status.discovery = discovery,
                None => {
                    by_key.insert(
                        key.clone(),
                        ProxyStatus {
                            identity: entry.status.identity.clone(),
                            spiffe_id: entry.status.spiffe_id.clone(),
                            connected: false,
                            connected_at: entry.status.connected_at,
                            disconnected_at: None,
                            sent_version: 0,
                            serving_version: 0,
                            last_report: None,
                            filters: Vec::new(),
                            discovery,
                        },
                    );
                }
            }
        }
        let mut all: Vec<ProxyStatus> = by_key.into_values().collect();
        all.sort_by(|a, b| {
            (&a.identity.namespace, &a.identity.name)
                .cmp(&(&b.identity.namespace, &b.identity.name))
        });
        all
    }

    /// The problems the source found with its inputs (filters, then services), as it last
    /// reported them.
    pub fn source_errors(&self) -> Vec<SourceError> {
        let mut errors = lock(&self.inner.source_errors).clone();
        errors.extend(lock(&self.inner.service_errors).iter().cloned());
        errors
    }

    /// Replaces the problems a source found with services, for a source that reports them
    /// apart from its filters' (the Kubernetes source's service watch).
    pub fn set_service_errors(&self, errors: Vec<SourceError>) {
        *lock(&self.inner.service_errors) = errors;
    }

    /// Replaces the services catalog with `services` (by `namespace/name`; each key must be
    /// its service's), unless it holds the same; returns whether it changed. Only `Watch`
    /// streams wake, and each sends its proxy just the services that changed.
    pub fn publish_services(&self, services: ServiceMap) -> bool {
        let mut count = 0;
        let changed = self.inner.services.send_if_modified(|published| {
            count = services.len();
            match published.next(services) {
                Some(next) => {
                    *published = Arc::new(next);
                    true
                }
                None => false,
            }
        });
        if changed {
            tracing::debug!(
                version = self.services_version(),
                services = count,
                "services published"
            );
        }
        changed
    }

    /// The version of the services catalog; 0 before the first
    /// [`publish_services`](Self::publish_services).
    pub fn services_version(&self) -> u64 {
        self.inner.services.borrow().version
    }

    /// The current services, by `namespace/name`.
    pub fn services(&self) -> Arc<ServiceMap> {
        Arc::clone(&self.inner.services.borrow().services)
    }

    /// The `Discovery` gRPC service, without TLS checks (see [`service`](Self::service)).
    pub fn discovery_service(&self) -> DiscoveryServer<DiscoveryService> {
        DiscoveryService::new(self.clone(), None, false).into_server()
    }

    pub(crate) fn subscribe_services(&self) -> watch::Receiver<Arc<PublishedServices>> {
        self.inner.services.subscribe()
    }

    /// Records a new `Watch` stream for the proxy of `status`, ending the one it replaces;
    /// returns the stream's id and the signal that a later stream replaced this one.
    pub(crate) fn register_discovery(
        &self,
        status: DiscoveryStatus,
    ) -> (u64, watch::Receiver<bool>) {
        let stream = self.inner.next_stream.fetch_add(1, Ordering::Relaxed);
        let key = (
            status.identity.namespace.clone(),
            status.identity.name.clone(),
        );
        let (superseded, signal) = watch::channel(false);
        let previous = lock(&self.inner.discovery).insert(
            key,
            DiscoveryEntry {
                stream,
                status,
                superseded,
            },
        );
        if let Some(previous) = previous {
            let _ = previous.superseded.send(true);
        }
        self.proxies_changed();
        (stream, signal)
    }

    /// Applies `update` to the discovery status of `identity` if `stream` still owns it.
    pub(crate) fn update_discovery(
        &self,
        identity: &ProxyIdentity,
        stream: u64,
        update: impl FnOnce(&mut DiscoveryStatus),
    ) {
        let key = (identity.namespace.clone(), identity.name.clone());
        let updated = match lock(&self.inner.discovery).get_mut(&key) {
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
            discovery: None,
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
