//! The Kubernetes source: `WasmFilter` custom resources, watched with kube-rs; and, for service
//! discovery, `Service`s with their `EndpointSlice`s (the `services` module).
//!
//! For every object the controller resolves the generation it sees: it checks the spec,
//! fetches the module ([`Fetcher`]: `https://`, OCI or a ConfigMap key), verifies its digest,
//! and runs the filter's `configure` with the new config in the control plane's own
//! [`Sandbox`]. Only a generation that passes all of that enters the catalog that proxies
//! receive; a failure leaves the previous good generation in service and says why in the
//! object's status.
//!
//! The status is written with server-side apply (field manager
//! [`crate::crd::FIELD_MANAGER`]) whenever it changes: when a generation is
//! resolved or refused, and when proxies take up, refuse or drop the filter. It carries
//! `Ready` and `Degraded` conditions and the rollout figures over connected proxies (the
//! README's Kubernetes section lists the reasons).
//!
//! A restarted control plane starts from the status each object already has (it comes with
//! the listing): it knows what an earlier run had in service, but not yet what the proxies
//! run, since they resubscribe over the next seconds. So it does not rewrite a filter still in
//! service as `Resolving`, `RollingOut` or `NoSelectedProxies` just because it has not heard
//! from the proxies yet: while it resolves the generation the status describes, and for
//! [`KubernetesOptions::resubscribe_grace`] after start while proxies resubscribe, the recorded
//! `Ready` condition and rollout figures stay until the proxies' reports say something
//! (all selected proxies run it, or one refused it). A change of the object meanwhile is
//! reported at once, and `servingGeneration` keeps naming the recorded generation until a new
//! one is accepted.
//!
//! One control plane replica owns the status; running several would make them overwrite each
//! other's rollout figures (there is no leader election yet).

// One topic per file: the shared `state` of every object; the `controller` that follows the
// watch and `resolve`s generations; the `status` computed from it and the proxies' reports,
// written by the `writer`; and what a `restart` keeps of the status an earlier run recorded.
mod controller;
mod resolve;
mod restart;
mod services;
mod state;
mod status;
#[cfg(test)]
mod test_support;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::controller::{Controller, Initial};
pub use self::services::{POD_GRACE, POLICY_ANNOTATION};
use self::state::State;
use self::writer::StatusWriter;
use crate::control_plane::ControlPlane;
use crate::crd::WasmFilterResource;
use crate::fetch::{FetchOptions, Fetcher};
use crate::sandbox::Sandbox;

/// How the Kubernetes source behaves.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// Watch only this namespace; every namespace when `None`.
    pub namespace: Option<String>,
    /// How modules are fetched.
    pub fetch: FetchOptions,
    /// How often `pullPolicy: Always` modules are fetched again.
    pub resync: Duration,
    /// How soon a failed fetch is tried again (doubling up to [`resync`](Self::resync)).
    pub retry: Duration,
    /// How long status writes wait for more changes, so a burst of proxy reports becomes one
    /// patch.
    pub status_delay: Duration,
    /// How long after start the status of a generation that an earlier run recorded in service
    /// waits for proxies to resubscribe and report before saying they have not (`RollingOut`,
    /// `NoSelectedProxies`). Proxies retry every few seconds at most.
    pub resubscribe_grace: Duration,
    /// Whether to discover services: watch `Service`s, `EndpointSlice`s and Pod metadata and
    /// publish them to the services catalog.
    pub discovery: bool,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            fetch: FetchOptions::default(),
            resync: Duration::from_secs(300),
            retry: Duration::from_secs(5),
            status_delay: Duration::from_millis(100),
            resubscribe_grace: Duration::from_secs(30),
            discovery: true,
        }
    }
}

/// A running Kubernetes source. Dropping it stops the watch and the status writer; the
/// catalog it published stays.
#[derive(Debug)]
pub struct KubernetesSource {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubernetesSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubernetesSource {
    /// Starts watching `WasmFilter` objects through `client` and publishing them to
    /// `control_plane`. Fails only when the fetcher or the sandbox cannot be set up; API
    /// server trouble is retried with backoff and logged.
    pub fn start(
        client: Client,
        control_plane: ControlPlane,
        options: KubernetesOptions,
    ) -> Result<Self, crate::Error> {
        let fetcher = Fetcher::new(Some(client.clone()), options.fetch.clone())
            .map_err(|e| crate::Error::Kubernetes(format!("module fetcher: {e}")))?;
        let sandbox = Sandbox::new()
            .map_err(|e| crate::Error::Kubernetes(format!("validation sandbox: {e}")))?;
        let state = Arc::new(Mutex::new(State::default()));
        let (status_kick, status_rx) = watch::channel(0u64);
        let controller = Controller {
            client: client.clone(),
            control_plane: control_plane.clone(),
            options: options.clone(),
            fetcher,
            sandbox,
            state: state.clone(),
            status_kick,
            modules: HashMap::new(),
            published: None,
            initial: Initial::Listing,
        };
        let discovery = options.discovery.then(|| services::ServiceWatch {
            client: client.clone(),
            control_plane: control_plane.clone(),
            namespace: options.namespace.clone(),
        });
        let writer = StatusWriter {
            client,
            control_plane,
            state,
            delay: options.status_delay,
            retry: options.retry,
            grace_until: tokio::time::Instant::now() + options.resubscribe_grace,
            written: HashMap::new(),
        };
        let mut tasks = vec![
            tokio::spawn(controller.run()),
            tokio::spawn(writer.run(status_rx)),
        ];
        if let Some(discovery) = discovery {
            tasks.push(tokio::spawn(discovery.run()));
        }
        Ok(Self { tasks })
    }
}

/// `namespace/name`.
type Key = String;

pub(super) fn key_of(object: &WasmFilterResource) -> Key {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}
