//! Service discovery from the cluster: core/v1 `Service`s joined with their
//! discovery.k8s.io/v1 `EndpointSlice`s (by the `kubernetes.io/service-name` label), and the
//! labels of the Pods behind the endpoints (a metadata-only watch), published to the services
//! catalog.
//!
//! - An endpoint is sent when it serves: `conditions.serving`, or `ready` where `serving` is
//!   absent, or true when both are. A serving endpoint that is not ready (terminating) is
//!   sent with `ready: false`.
//! - Ports by name: the service port's `name` is looked up among the slice's ports; an
//!   endpoint lacking one of the service's (TCP) ports is left out. `appProtocol` `http`
//!   gives `http1`, `kubernetes.io/h2c` and `grpc` give `http2`.
//! - `zone` from the endpoint, weight 1, labels those of the Pod named by `targetRef`.
//! - The traffic policy is the `weft.dev/traffic-policy` annotation (YAML, the
//!   `weft_traffic` schema). A bad one keeps the service's last good version in the catalog
//!   (endpoints included) and records an error until it is fixed.
//! - `ExternalName` services, services without TCP ports and FQDN slices are skipped.
//!
//! Nothing is published before services and slices are listed (a partial catalog would make
//! proxies drop the services not yet seen); Pod labels are waited for up to [`POD_GRACE`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service as K8sService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_objects};
use kube::{Client, ResourceExt};
use weft_api::v1;
use weft_traffic::policy::RawPolicy;
use weft_yaml::{Document, FieldPath};

use crate::catalog::SourceError;
use crate::control_plane::ControlPlane;
use crate::service::MAX_ENDPOINTS;
use crate::services::ServiceMap;

/// The annotation holding a service's traffic policy.
pub const POLICY_ANNOTATION: &str = "weft.dev/traffic-policy";
/// The label joining an `EndpointSlice` to its service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// How long the first publish waits for the Pod listing (labels) once services and slices
/// are listed: without RBAC for pods, services still flow, without labels.
pub const POD_GRACE: Duration = Duration::from_secs(5);

/// `namespace/name`.
type Key = String;

/// Follows the three watches and publishes the services.
pub(super) struct ServiceWatch {
    pub(super) client: Client,
    pub(super) control_plane: ControlPlane,
    pub(super) namespace: Option<String>,
}

impl ServiceWatch {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    pub(super) async fn run(self) {
        let mut services = watch_objects(self.api::<K8sService>(), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut slices = watch_objects(
            self.api::<EndpointSlice>(),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
        )
        .default_backoff()
        .boxed();
        let mut pods = watch_objects(
            self.api::<PartialObjectMeta<Pod>>(),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        let mut state = Discovered::default();
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                event = services.next() => match event {
                    Some(Ok(event)) => state.on_service(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "watching Services failed; retrying with backoff"),
                    None => return,
                },
                event = slices.next() => match event {
                    Some(Ok(event)) => state.on_slice(event),
                    Some(Err(e)) => tracing::warn!(error = %e, "watching EndpointSlices failed; retrying with backoff"),
                    None => return,
                },
                event = pods.next() => match event {
                    Some(Ok(event)) => state.on_pod(event),
                    Some(Err(e)) => tracing::debug!(error = %e, "watching Pods failed (endpoint labels); retrying with backoff"),
                    None => return,
                },
                () = sleep_until(grace) => grace = None,
            }
            if !state.published {
                if !(state.services_listed && state.slices_listed) {
                    continue;
                }
                if !state.pods_listed {
                    let deadline =
                        *grace.get_or_insert_with(|| tokio::time::Instant::now() + POD_GRACE);
                    if tokio::time::Instant::now() < deadline {
                        continue;
                    }
                    tracing::warn!(
                        "Pods not listed within {POD_GRACE:?}: publishing services without \
                         endpoint labels for now (does the control plane's role allow \
                         list/watch on pods?)"
                    );
                }
                state.published = true;
            }
            state.rebuild();
            let errors: Vec<SourceError> = state.errors.values().cloned().collect();
            self.control_plane.set_service_errors(errors);
            let count = state.built.len();
            if self.control_plane.publish_services(state.built.clone()) {
                tracing::debug!(
                    services = count,
                    version = self.control_plane.services_version(),
                    "publishing services from the cluster"
                );
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What the watches have seen, and the services built from it.
#[derive(Debug, Default)]
struct Discovered {
    services: HashMap<Key, Arc<K8sService>>,
    /// Slices by `namespace/slice-name`, with the service they belong to.
    slices: HashMap<Key, (Key, Arc<EndpointSlice>)>,
    by_service: HashMap<Key, BTreeSet<Key>>,
    /// Pod labels by `namespace/name`.
    pods: HashMap<Key, BTreeMap<String, String>>,
    /// The listings in progress (`Init` .. `InitDone`).
    service_listing: Option<Vec<K8sService>>,
    slice_listing: Option<Vec<EndpointSlice>>,
    pod_listing: Option<Vec<(Key, BTreeMap<String, String>)>>,
    services_listed: bool,
    slices_listed: bool,
    pods_listed: bool,
    published: bool,
    /// Services to build again.
    dirty: HashSet<Key>,
    /// The services built, each its last good version.
    built: ServiceMap,
    errors: BTreeMap<Key, SourceError>,
}

fn key(namespace: Option<&str>, name: &str) -> Key {
    format!("{}/{name}", namespace.unwrap_or_default())
}

impl Discovered {
    fn on_service(&mut self, event: Event<K8sService>) {
        match event {
            Event::Init => self.service_listing = Some(Vec::new()),
            Event::InitApply(object) => {
                if let Some(listing) = &mut self.service_listing {
                    listing.push(object);
                }
            }
            Event::InitDone => {
                let listing = self.service_listing.take().unwrap_or_default();
                self.dirty.extend(self.services.keys().cloned());
                self.services.clear();
                for object in listing {
                    let key = key(object.namespace().as_deref(), &object.name_any());
                    self.dirty.insert(key.clone());
                    self.services.insert(key, Arc::new(object));
                }
                self.services_listed = true;
            }
            Event::Apply(object) => {
                let key = key(object.namespace().as_deref(), &object.name_any());
                self.dirty.insert(key.clone());
                self.services.insert(key, Arc::new(object));
            }
            Event::Delete(object) => {
                let key = key(object.namespace().as_deref(), &object.name_any());
                self.dirty.insert(key.clone());
                self.services.remove(&key);
            }
        }
    }

    fn on_slice(&mut self, event: Event<EndpointSlice>) {
        match event {
            Event::Init => self.slice_listing = Some(Vec::new()),
            Event::InitApply(object) => {
                if let Some(listing) = &mut self.slice_listing {
                    listing.push(object);
                }
            }
            Event::InitDone => {
                let listing = self.slice_listing.take().unwrap_or_default();
                let old: Vec<Key> = self.slices.keys().cloned().collect();
                for slice in old {
                    self.remove_slice(&slice);
                }
                for object in listing {
                    self.put_slice(object);
                }
                self.slices_listed = true;
            }
            Event::Apply(object) => self.put_slice(object),
            Event::Delete(object) => {
                self.remove_slice(&key(object.namespace().as_deref(), &object.name_any()));
            }
        }
    }

    fn put_slice(&mut self, object: EndpointSlice) {
        let namespace = object.namespace();
        let slice = key(namespace.as_deref(), &object.name_any());
        self.remove_slice(&slice);
        let Some(service_name) = object.labels().get(SERVICE_NAME_LABEL).cloned() else {
            return;
        };
        let service = key(namespace.as_deref(), &service_name);
        self.dirty.insert(service.clone());
        self.by_service
            .entry(service.clone())
            .or_default()
            .insert(slice.clone());
        self.slices.insert(slice, (service, Arc::new(object)));
    }

    fn remove_slice(&mut self, slice: &str) {
        if let Some((service, _)) = self.slices.remove(slice) {
            if let Some(set) = self.by_service.get_mut(&service) {
                set.remove(slice);
                if set.is_empty() {
                    self.by_service.remove(&service);
                }
            }
            self.dirty.insert(service);
        }
    }

    fn on_pod(&mut self, event: Event<PartialObjectMeta<Pod>>) {
        let labels_of = |object: &PartialObjectMeta<Pod>| {
            (
                key(object.namespace().as_deref(), &object.name_any()),
                object.labels().clone(),
            )
        };
        match event {
            Event::Init => self.pod_listing = Some(Vec::new()),
            Event::InitApply(object) => {
                if let Some(listing) = &mut self.pod_listing {
                    listing.push(labels_of(&object));
                }
            }
            Event::InitDone => {
                let listing = self.pod_listing.take().unwrap_or_default();
                let old = std::mem::take(&mut self.pods);
                self.pods = listing.into_iter().collect();
                let changed: HashSet<Key> = old
                    .keys()
                    .chain(self.pods.keys())
                    .filter(|pod| old.get(*pod) != self.pods.get(*pod))
                    .cloned()
                    .collect();
                self.pods_changed(&changed);
                self.pods_listed = true;
            }
            Event::Apply(object) => {
                let (pod, labels) = labels_of(&object);
                if self.pods.get(&pod) != Some(&labels) {
                    self.pods.insert(pod.clone(), labels);
                    self.pods_changed(&HashSet::from([pod]));
                }
            }
            Event::Delete(object) => {
                let (pod, _) = labels_of(&object);
                if self.pods.remove(&pod).is_some() {
                    self.pods_changed(&HashSet::from([pod]));
                }
            }
        }
    }

    /// Marks dirty the services with an endpoint on one of `pods`.
    fn pods_changed(&mut self, pods: &HashSet<Key>) {
        if pods.is_empty() {
            return;
        }
        for (service, slice) in self.slices.values() {
            let hit = slice.endpoints.iter().flatten().any(|e| {
                e.target_ref.as_ref().is_some_and(|target| {
                    target.kind.as_deref() == Some("Pod")
                        && pods.contains(&key(
                            target
                                .namespace
                                .as_deref()
                                .or(slice.metadata.namespace.as_deref()),
                            target.name.as_deref().unwrap_or_default(),
                        ))
                })
            });
            if hit {
                self.dirty.insert(service.clone());
            }
        }
    }

    /// Builds the dirty services again.
    fn rebuild(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(object) = self.services.get(&key).cloned() else {
                self.built.remove(&key);
                self.errors.remove(&key);
                continue;
            };
            match self.build(&key, &object) {
                Ok(Some(service)) => {
                    self.errors.remove(&key);
                    self.built.insert(key, Arc::new(service));
                }
                Ok(None) => {
                    self.errors.remove(&key);
                    self.built.remove(&key);
                }
                Err(message) => {
                    tracing::warn!(
                        service = %key,
                        "bad Service (its last good version, if any, stays): {message}"
                    );
                    self.errors.insert(
                        key.clone(),
                        SourceError {
                            file: format!("Service {key}"),
                            message,
                        },
                    );
                }
            }
        }
    }

    /// The service `key` as proxies get it; `None` for one that cannot be routed to
    /// (`ExternalName`, no TCP port); an error for a bad traffic policy.
    fn build(&self, key: &str, object: &K8sService) -> Result<Option<v1::Service>, String> {
        let Some(spec) = &object.spec else {
            return Ok(None);
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            return Ok(None);
        }
        let ports: Vec<v1::ServicePort> = spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
            .filter_map(|p| {
                Some(v1::ServicePort {
                    name: p.name.clone().unwrap_or_default(),
                    port: u32::try_from(p.port)
                        .ok()
                        .filter(|p| (1..=65_535).contains(p))?,
                    protocol: app_protocol(p.app_protocol.as_deref()).to_owned(),
                })
            })
            .collect();
        if ports.is_empty() {
            return Ok(None);
        }
        let origin = format!("Service {key}");
        let policy_json = match object.annotations().get(POLICY_ANNOTATION) {
            None => String::new(),
            Some(text) => {
                let file = format!("{origin} annotation {POLICY_ANNOTATION}");
                let doc = Document::new(text, Path::new(&file));
                let raw: RawPolicy = doc.parse().map_err(|e| e.to_string())?;
                let json = raw.to_json();
                weft_traffic::policy::check(&doc, &FieldPath::root(), raw)
                    .map_err(|e| e.to_string())?;
                json
            }
        };
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        Ok(Some(v1::Service {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            endpoints: self.endpoints(key, &ports),
            ports,
            policy_json,
            origin,
        }))
    }

    fn endpoints(&self, key: &str, ports: &[v1::ServicePort]) -> Vec<v1::ServiceEndpoint> {
        // By address and ports: one Pod IP may serve in two slices while they are
        // rebalanced (the same ports), and hostNetwork pods of one node share an IP (other
        // ports).
        type Key = (String, Vec<(String, u32)>);
        let mut by_address: BTreeMap<Key, v1::ServiceEndpoint> = BTreeMap::new();
        let slices = self.by_service.get(key).into_iter().flatten();
        for (_, slice) in slices.filter_map(|s| self.slices.get(s)) {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let slice_ports: HashMap<&str, u32> = slice
                .ports
                .iter()
                .flatten()
                .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
                .filter_map(|p| {
                    let port = u32::try_from(p.port?)
                        .ok()
                        .filter(|p| (1..=65_535).contains(p))?;
                    Some((p.name.as_deref().unwrap_or(""), port))
                })
                .collect();
            let Some(endpoint_ports): Option<HashMap<String, u32>> = ports
                .iter()
                .map(|p| Some((p.name.clone(), *slice_ports.get(p.name.as_str())?)))
                .collect()
            else {
                continue;
            };
            let mut port_key: Vec<(String, u32)> = endpoint_ports
                .iter()
                .map(|(name, port)| (name.clone(), *port))
                .collect();
            port_key.sort_unstable();
            for endpoint in slice.endpoints.iter().flatten() {
                let conditions = endpoint.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready);
                let serving = conditions.and_then(|c| c.serving).or(ready).unwrap_or(true);
                if !serving {
                    continue;
                }
                let pod = endpoint
                    .target_ref
                    .as_ref()
                    .filter(|t| t.kind.as_deref() == Some("Pod"));
                let pod_key = pod.map(|t| {
                    key_of_target(
                        t.namespace
                            .as_deref()
                            .or(slice.metadata.namespace.as_deref()),
                        t.name.as_deref().unwrap_or_default(),
                    )
                });
                let labels = pod_key
                    .as_ref()
                    .and_then(|k| self.pods.get(k))
                    .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                for address in &endpoint.addresses {
                    if address.parse::<std::net::IpAddr>().is_err()
                        || by_address.len() >= MAX_ENDPOINTS
                    {
                        continue;
                    }
                    let candidate = v1::ServiceEndpoint {
                        address: address.clone(),
                        ports: endpoint_ports.clone(),
                        weight: 1,
                        labels: std::collections::HashMap::clone(&labels),
                        zone: endpoint.zone.clone().unwrap_or_default(),
                        ready: ready.unwrap_or(true),
                        target: pod_key
                            .as_ref()
                            .map(|k| format!("Pod {k}"))
                            .unwrap_or_default(),
                    };
                    // The same endpoint in two slices (while slices are rebalanced): a ready
                    // copy wins.
                    let key = (address.clone(), port_key.clone());
                    match by_address.get(&key) {
                        Some(existing) if existing.ready || !candidate.ready => {}
                        _ => {
                            by_address.insert(key, candidate);
                        }
                    }
                }
            }
        }
        by_address.into_values().collect()
    }
}

fn key_of_target(namespace: Option<&str>, name: &str) -> Key {
    key(namespace, name)
}

/// Kubernetes `appProtocol` as the wire's protocol.
fn app_protocol(app: Option<&str>) -> &'static str {
    match app {
        Some("http") => "http1",
        Some("kubernetes.io/h2c" | "grpc") => "http2",
        _ => "",
    }
}
