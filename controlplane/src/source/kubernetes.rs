//! The Kubernetes source: `WasmFilter` custom resources, watched with kube-rs.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_objects};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, CatalogFilter, SourceError};
use crate::control_plane::{ControlPlane, lock};
use crate::crd::{
    Condition, FIELD_MANAGER, ProxyFailure, Rollout, WasmFilterResource, WasmFilterStatus,
};
use crate::definition::{FilterSettings, PullPolicy};
use crate::fetch::{FetchOptions, Fetcher};
use crate::sandbox::Sandbox;
use crate::status::ProxyStatus;

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
        let writer = StatusWriter {
            client,
            control_plane,
            state,
            delay: options.status_delay,
            retry: options.retry,
            grace_until: tokio::time::Instant::now() + options.resubscribe_grace,
            written: HashMap::new(),
        };
        Ok(Self {
            tasks: vec![
                tokio::spawn(controller.run()),
                tokio::spawn(writer.run(status_rx)),
            ],
        })
    }
}

/// `namespace/name`.
type Key = String;

/// What the controller knows of every object, shared with the status writer.
#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<Key, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The object as last seen on the watch.
    object: Arc<WasmFilterResource>,
    /// The generation in the catalog, if any ever passed.
    accepted: Option<Accepted>,
    /// Why the newest generation was refused, if it was.
    problem: Option<Problem>,
    /// The generation being resolved, if any.
    resolving: Option<i64>,
    /// When to resolve again (failed fetches, `pullPolicy: Always`).
    retry_at: Option<tokio::time::Instant>,
    /// The next retry delay after a failed fetch.
    backoff: Duration,
    /// What the object's status had in service when this control plane first saw it (an
    /// earlier run wrote it): proxies run it until told otherwise.
    restored: Option<Restored>,
}

/// The generation in service according to a status an earlier run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Restored {
    /// The generation that status describes.
    observed_generation: Option<i64>,
    /// The generation in service.
    generation: i64,
    /// Its module's digest.
    sha256: String,
    /// Its rollout figures.
    rollout: Option<Rollout>,
}

impl Restored {
    fn from_status(status: Option<&WasmFilterStatus>) -> Option<Self> {
        let status = status?;
        Some(Self {
            observed_generation: status.observed_generation,
            generation: status.serving_generation?,
            sha256: status.serving_sha256.clone()?,
            rollout: status.rollout.clone(),
        })
    }
}

#[derive(Debug, Clone)]
struct Accepted {
    filter: CatalogFilter,
    module: Bytes,
}

/// A generation refused before rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    generation: i64,
    /// `InvalidSpec`, `FetchFailed`, `DigestMismatch`, `InvalidSource`, `ModuleInvalid` or
    /// `ConfigRejected`.
    reason: &'static str,
    message: String,
}

/// The outcome of resolving one generation.
#[derive(Debug)]
struct Resolved {
    key: Key,
    generation: i64,
    /// Where the module came from (see [`module_cache_key`]).
    cache_key: String,
    result: Result<Accepted, Problem>,
}

struct Controller {
    client: Client,
    control_plane: ControlPlane,
    options: KubernetesOptions,
    fetcher: Fetcher,
    sandbox: Sandbox,
    state: Arc<Mutex<State>>,
    status_kick: watch::Sender<u64>,
    /// Modules fetched before, by source and expected digest, for `pullPolicy: IfNotPresent`.
    modules: HashMap<String, (Bytes, String)>,
    /// The filters last published, to skip publishing an unchanged catalog.
    published: Option<Vec<CatalogFilter>>,
    /// Whether the first complete listing has been resolved.
    initial: Initial,
}

/// Publishing before every object of the first listing is resolved would hand proxies a
/// partial catalog, and they would drop the filters still being fetched.
#[derive(Debug)]
enum Initial {
    /// The first listing has not completed.
    Listing,
    /// These objects of the first listing are being resolved.
    Resolving(HashSet<Key>),
    /// Publishing as things change.
    Done,
}

impl Controller {
    async fn run(mut self) {
        let api: Api<WasmFilterResource> = match &self.options.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        };
        let mut events = watch_objects(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Resolved>();
        let mut listing: Option<BTreeMap<Key, WasmFilterResource>> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    None => {
                        tracing::error!("the WasmFilter watch ended; no more updates from the cluster");
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching WasmFilters failed; retrying with backoff");
                    }
                    Some(Ok(Event::Init)) => listing = Some(BTreeMap::new()),
                    Some(Ok(Event::InitApply(object))) => {
                        if let Some(listing) = &mut listing {
                            listing.insert(key_of(&object), object);
                        }
                    }
                    Some(Ok(Event::InitDone)) => {
                        let objects = listing.take().unwrap_or_default();
                        self.replace_all(objects, &done_tx);
                    }
                    Some(Ok(Event::Apply(object))) => self.upsert(object, &done_tx),
                    Some(Ok(Event::Delete(object))) => self.remove(&key_of(&object)),
                },
                Some(resolved) = done_rx.recv() => self.finish(resolved),
                _ = tick.tick() => self.retry_due(&done_tx),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn kick_status(&self) {
        self.status_kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A complete listing: objects missing from it were deleted while the watch was down.
    fn replace_all(
        &mut self,
        objects: BTreeMap<Key, WasmFilterResource>,
        done: &mpsc::UnboundedSender<Resolved>,
    ) {
        let gone: Vec<Key> = self
            .lock()
            .entries
            .keys()
            .filter(|key| !objects.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
        for object in objects.into_values() {
            self.upsert(object, done);
        }
        if let Initial::Listing = self.initial {
            let pending: HashSet<Key> = self
                .lock()
                .entries
                .iter()
                .filter(|(_, e)| e.resolving.is_some())
                .map(|(key, _)| key.clone())
                .collect();
            tracing::info!(
                filters = pending.len(),
                "listed WasmFilters; publishing once all are resolved"
            );
            self.initial = Initial::Resolving(pending);
            self.initial_resolved(None);
        }
    }

    /// Notes that `key` of the first listing is resolved (or gone); publishes the first
    /// catalog when none is left.
    fn initial_resolved(&mut self, key: Option<&str>) {
        if let Initial::Resolving(pending) = &mut self.initial {
            if let Some(key) = key {
                pending.remove(key);
            }
            if pending.is_empty() {
                self.initial = Initial::Done;
                self.publish();
            }
        }
    }

    /// A new or changed object: resolve it if its generation is new. Status-only changes
    /// (our own patches among them) only refresh the stored object.
    fn upsert(&mut self, object: WasmFilterResource, done: &mpsc::UnboundedSender<Resolved>) {
        let key = key_of(&object);
        let generation = object.metadata.generation.unwrap_or(0);
        let object = Arc::new(object);
        let start = {
            let mut state = self.lock();
            match state.entries.get_mut(&key) {
                Some(entry) => {
                    let seen = entry.object.metadata.generation.unwrap_or(0);
                    let spec_changed = entry.object.spec != object.spec;
                    entry.object = object.clone();
                    (generation != seen || spec_changed).then(|| {
                        entry.resolving = Some(generation);
                        entry.retry_at = None;
                        entry.backoff = self.options.retry;
                    })
                }
                None => {
                    state.entries.insert(
                        key.clone(),
                        Entry {
                            object: object.clone(),
                            accepted: None,
                            problem: None,
                            resolving: Some(generation),
                            retry_at: None,
                            backoff: self.options.retry,
                            restored: Restored::from_status(object.status.as_ref()),
                        },
                    );
                    Some(())
                }
            }
        };
        if start.is_some() {
            tracing::info!(filter = %key, generation, "resolving WasmFilter");
            self.resolve(key, object, false, done);
            self.kick_status();
        }
    }

    fn remove(&mut self, key: &str) {
        let removed = self.lock().entries.remove(key);
        self.initial_resolved(Some(key));
        if removed.is_some() {
            tracing::info!(filter = %key, "WasmFilter deleted");
            self.publish();
            self.kick_status();
        }
    }

    /// Resolves `object`'s generation in a task of its own: fetch, verify, check in the
    /// sandbox. `refetch` ignores cached module bytes (`pullPolicy: Always` resyncs).
    fn resolve(
        &mut self,
        key: Key,
        object: Arc<WasmFilterResource>,
        refetch: bool,
        done: &mpsc::UnboundedSender<Resolved>,
    ) {
        let generation = object.metadata.generation.unwrap_or(0);
        let cache_key = module_cache_key(&object);
        let cached = match object.spec.pull_policy {
            PullPolicy::IfNotPresent if !refetch => self.modules.get(&cache_key).cloned(),
            _ => None,
        };
        // Modules no filter uses any more are dropped here, when one is about to be fetched.
        if cached.is_none() {
            let in_use: HashSet<String> = self
                .lock()
                .entries
                .values()
                .map(|e| module_cache_key(&e.object))
                .collect();
            self.modules.retain(|key, _| in_use.contains(key));
        }
        let fetcher = self.fetcher.clone();
        let sandbox = self.sandbox.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let result = resolve(&object, cached, &fetcher, &sandbox).await;
            let _ = done.send(Resolved {
                key,
                generation,
                cache_key,
                result,
            });
        });
    }

    /// Records a resolution; publishes when the catalog changed.
    fn finish(&mut self, resolved: Resolved) {
        let Resolved {
            key,
            generation,
            cache_key,
            result,
        } = resolved;
        if let Ok(accepted) = &result {
            self.modules.insert(
                cache_key,
                (
                    accepted.module.clone(),
                    accepted.filter.module_sha256.clone(),
                ),
            );
        }
        {
            let mut state = self.lock();
            let Some(entry) = state.entries.get_mut(&key) else {
                return;
            };
            if entry.resolving != Some(generation) {
                // A newer generation is being resolved; this result is stale.
                return;
            }
            entry.resolving = None;
            match result {
                Ok(accepted) => {
                    tracing::info!(
                        filter = %key,
                        generation,
                        sha256 = %accepted.filter.module_sha256,
                        "WasmFilter accepted"
                    );
                    entry.accepted = Some(accepted);
                    entry.problem = None;
                    entry.backoff = self.options.retry;
                    entry.retry_at = (entry.object.spec.pull_policy == PullPolicy::Always)
                        .then(|| tokio::time::Instant::now() + self.options.resync);
                }
                Err(problem) => {
                    tracing::warn!(
                        filter = %key,
                        generation,
                        reason = problem.reason,
                        message = %problem.message,
                        "WasmFilter refused; the previous good generation stays in service"
                    );
                    // Nothing of this filter enters the catalog (this run never accepted a
                    // generation of it), so whatever an earlier run had in service is gone.
                    if entry.accepted.is_none() {
                        entry.restored = None;
                    }
                    // Fetches fail for reasons that pass (a registry down); the rest need a
                    // new spec, which the watch brings.
                    if problem.reason == "FetchFailed" {
                        entry.retry_at = Some(tokio::time::Instant::now() + entry.backoff);
                        entry.backoff = (entry.backoff * 2).min(self.options.resync);
                    } else {
                        entry.retry_at = None;
                    }
                    entry.problem = Some(problem);
                }
            }
        }
        self.initial_resolved(Some(&key));
        self.publish();
        self.kick_status();
    }

    /// Resolves again the entries whose retry time has come.
    fn retry_due(&mut self, done: &mpsc::UnboundedSender<Resolved>) {
        let now = tokio::time::Instant::now();
        let due: Vec<(Key, Arc<WasmFilterResource>)> = {
            let mut state = self.lock();
            state
                .entries
                .iter_mut()
                .filter(|(_, e)| e.resolving.is_none() && e.retry_at.is_some_and(|at| at <= now))
                .map(|(key, e)| {
                    e.retry_at = None;
                    e.resolving = Some(e.object.metadata.generation.unwrap_or(0));
                    (key.clone(), e.object.clone())
                })
                .collect()
        };
        for (key, object) in due {
            tracing::debug!(filter = %key, "fetching the module again");
            self.resolve(key, object, true, done);
        }
    }

    /// Publishes the accepted filters, unless they are what was published last or the first
    /// listing is still being resolved.
    fn publish(&mut self) {
        if !matches!(self.initial, Initial::Done) {
            return;
        }
        let (filters, modules, errors) = {
            let state = self.lock();
            let mut filters = Vec::new();
            let mut modules = HashMap::new();
            let mut errors = Vec::new();
            for (key, entry) in &state.entries {
                if let Some(accepted) = &entry.accepted {
                    filters.push(accepted.filter.clone());
                    modules.insert(
                        accepted.filter.module_sha256.clone(),
                        accepted.module.clone(),
                    );
                }
                if let Some(problem) = &entry.problem {
                    errors.push(SourceError {
                        file: format!("WasmFilter {key}"),
                        message: format!(
                            "generation {}: {}: {}",
                            problem.generation, problem.reason, problem.message
                        ),
                    });
                }
            }
            (filters, modules, errors)
        };
        self.control_plane.set_source_errors(errors);
        if self.published.as_ref() == Some(&filters) {
            return;
        }
        self.published = Some(filters.clone());
        self.control_plane.publish(Catalog { filters, modules });
    }
}

fn key_of(object: &WasmFilterResource) -> Key {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Where a module comes from, as a cache key: the same source and digest give the same bytes.
fn module_cache_key(object: &WasmFilterResource) -> String {
    let spec = &object.spec;
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{}",
        object.namespace().unwrap_or_default(),
        spec.module.url,
        spec.module.oci,
        spec.module.config_map,
        spec.pull_secret,
        spec.sha256.as_deref().unwrap_or("")
    )
}

/// Checks the spec, fetches and verifies the module (unless `cached`), and runs `configure`
/// in the sandbox.
async fn resolve(
    object: &WasmFilterResource,
    cached: Option<(Bytes, String)>,
    fetcher: &Fetcher,
    sandbox: &Sandbox,
) -> Result<Accepted, Problem> {
    let generation = object.metadata.generation.unwrap_or(0);
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let problem = |reason: &'static str, message: String| Problem {
        generation,
        reason,
        message,
    };
    let settings: FilterSettings = object
        .spec
        .resolve()
        .map_err(|e| problem("InvalidSpec", e.to_string()))?;
    let (module, sha256) = match cached {
        Some(cached) => cached,
        None => {
            let fetched = fetcher
                .fetch(&namespace, &object.spec)
                .await
                .map_err(|e| problem(e.reason(), e.to_string()))?;
            (fetched.bytes, fetched.sha256)
        }
    };
    let qualified = format!("{namespace}/{name}");
    sandbox
        .check(qualified, sha256.clone(), module.clone(), settings.clone())
        .await
        .map_err(|e| problem(e.reason(), e.to_string()))?;
    Ok(Accepted {
        filter: CatalogFilter {
            namespace,
            name,
            generation,
            settings,
            module_sha256: sha256,
        },
        module,
    })
}

/// Writes every object's status when it changes.
struct StatusWriter {
    client: Client,
    control_plane: ControlPlane,
    state: Arc<Mutex<State>>,
    delay: Duration,
    retry: Duration,
    /// Until when proxies may still be resubscribing after start (see
    /// [`KubernetesOptions::resubscribe_grace`]).
    grace_until: tokio::time::Instant,
    /// The status last written per object (or found on it), to write only changes.
    written: HashMap<Key, WasmFilterStatus>,
}

impl StatusWriter {
    async fn run(mut self, mut kicks: watch::Receiver<u64>) {
        let mut proxies = self.control_plane.subscribe_proxy_changes();
        let mut failed = false;
        let mut grace_over = false;
        loop {
            let retry = async {
                if failed {
                    tokio::time::sleep(self.retry).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                changed = kicks.changed() => if changed.is_err() { return },
                changed = proxies.changed() => if changed.is_err() { return },
                () = retry => {}
                // The statuses held while proxies resubscribed are due now.
                () = tokio::time::sleep_until(self.grace_until), if !grace_over => grace_over = true,
            }
            // Let a burst of changes settle into one write per object.
            tokio::time::sleep(self.delay).await;
            kicks.borrow_and_update();
            proxies.borrow_and_update();
            failed = !self.write_changed().await;
        }
    }

    /// Writes the statuses that differ from what the objects hold; false if a write failed.
    async fn write_changed(&mut self) -> bool {
        let proxies = self.control_plane.proxies();
        let root = self.control_plane.root_namespace().to_owned();
        let now = SystemTime::now();
        let resubscribing = tokio::time::Instant::now() < self.grace_until;
        let wanted: Vec<(Key, Arc<WasmFilterResource>, WasmFilterStatus)> = {
            let state = lock(&self.state);
            self.written
                .retain(|key, _| state.entries.contains_key(key));
            state
                .entries
                .iter()
                .filter_map(|(key, entry)| {
                    let status = compute_status(entry, &proxies, &root, now);
                    if keeps_recorded_status(entry, &status, resubscribing) {
                        tracing::debug!(filter = %key, "keeping the recorded status until proxies report");
                        return None;
                    }
                    Some((key.clone(), entry.object.clone(), status))
                })
                .collect()
        };
        let mut ok = true;
        for (key, object, status) in wanted {
            let current = self.written.get(&key).or(object.status.as_ref());
            if current.is_some_and(|c| same_status(c, &status)) {
                continue;
            }
            let namespace = object.namespace().unwrap_or_default();
            let api: Api<WasmFilterResource> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "apiVersion": crate::definition::API_VERSION,
                "kind": crate::definition::KIND,
                "status": status,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api
                .patch_status(&object.name_any(), &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    tracing::debug!(filter = %key, "status written");
                    self.written.insert(key, status);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // Deleted meanwhile; the watch will tell.
                }
                Err(e) => {
                    tracing::warn!(filter = %key, error = %e, "cannot write the WasmFilter status; will retry");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// Whether two statuses say the same thing (transition times aside).
fn same_status(a: &WasmFilterStatus, b: &WasmFilterStatus) -> bool {
    let strip = |s: &WasmFilterStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time.clear();
        }
        s
    };
    strip(a) == strip(b)
}

/// Whether the status an earlier run recorded on the object should stay rather than `status`,
/// because this run knows nothing new about the generation it has in service:
///
/// - that generation is the one being resolved again (the spec did not change meanwhile):
///   this run has not even accepted it yet, but proxies run it;
/// - or, while proxies may still be `resubscribing`, this run accepted that very generation
///   and digest, and `status` says only that the selected proxies have not all reported
///   (`RollingOut`) or not come back (`NoSelectedProxies`). Reports that every selected proxy
///   runs it, or that one refused it, are written at once.
///
/// A new generation, a refusal or a changed digest is news, and written.
fn keeps_recorded_status(entry: &Entry, status: &WasmFilterStatus, resubscribing: bool) -> bool {
    let Some(restored) = &entry.restored else {
        return false;
    };
    let generation = entry.object.metadata.generation.unwrap_or(0);
    if entry
        .problem
        .as_ref()
        .is_some_and(|p| p.generation == generation)
    {
        return false;
    }
    match &entry.accepted {
        None => {
            entry.resolving == Some(generation) && restored.observed_generation == Some(generation)
        }
        Some(accepted) => {
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.reason.as_str());
            resubscribing
                && entry.resolving.is_none()
                && accepted.filter.generation == restored.generation
                && accepted.filter.module_sha256 == restored.sha256
                && matches!(ready, Some("RollingOut" | "NoSelectedProxies"))
        }
    }
}

/// The most proxy failures a status lists.
const MAX_LISTED_FAILURES: usize = 10;

/// The status of one object: what was refused and why, what is in service, and how far it
/// rolled out over the connected `proxies`.
///
/// - `Ready` is `True` when the newest generation is in service on every selected proxy
///   (`RolledOut`) or no connected proxy selects it (`NoSelectedProxies`); `False` while it
///   is resolved (`Resolving`) or rolls out (`RollingOut`), when proxies refused it
///   (`ProxiesRejected`), or when the control plane refused it (`FetchFailed`,
///   `DigestMismatch`, `InvalidSource`, `InvalidSpec`, `ModuleInvalid`, `ConfigRejected`).
/// - `Degraded` is `True` when something needs a human: the control plane or a proxy refused
///   the newest generation. Its message says which generation stays in service.
/// - `servingGeneration` is the generation this run accepted; before it accepts one, the one
///   an earlier run recorded (with its rollout figures), which proxies still run.
///
/// Whether to write it or keep the recorded status is [`keeps_recorded_status`]'s call.
fn compute_status(
    entry: &Entry,
    proxies: &[ProxyStatus],
    root_namespace: &str,
    now: SystemTime,
) -> WasmFilterStatus {
    let generation = entry.object.metadata.generation.unwrap_or(0);
    let previous = entry.object.status.as_ref();
    // What is in service: what this run accepted, or else what an earlier run recorded, which
    // proxies run until this run publishes.
    let (serving, rollout) = match (&entry.accepted, &entry.restored) {
        (Some(accepted), _) => (
            Some((
                accepted.filter.generation,
                accepted.filter.module_sha256.as_str(),
            )),
            Some(rollout(&accepted.filter, proxies, root_namespace)),
        ),
        (None, Some(restored)) => (
            Some((restored.generation, restored.sha256.as_str())),
            restored.rollout.clone(),
        ),
        (None, None) => (None, None),
    };
    let in_service = match serving {
        Some((generation, sha256)) => format!(
            "generation {generation} (sha256 {}) stays in service",
            short(sha256)
        ),
        None => "no generation of this filter is in service".to_owned(),
    };
    let problem = entry
        .problem
        .as_ref()
        .filter(|p| p.generation == generation);
    // Only a generation this run accepted has rollout figures of its own.
    let current = entry
        .accepted
        .as_ref()
        .is_some_and(|a| a.filter.generation == generation);

    let (ready, ready_reason, ready_message) = if let Some(p) = problem {
        (
            false,
            p.reason,
            format!(
                "generation {generation} was refused: {}; {in_service}",
                p.message
            ),
        )
    } else if !current {
        (
            false,
            "Resolving",
            format!("fetching and checking generation {generation}; {in_service}"),
        )
    } else {
        let r = rollout.as_ref().cloned().unwrap_or_default();
        let f = serving.map(|(_, sha256)| short(sha256)).unwrap_or_default();
        if r.rejected > 0 {
            let first = r
                .failures
                .first()
                .map(|f| format!(": {} says {}", f.proxy, f.message))
                .unwrap_or_default();
            (
                false,
                "ProxiesRejected",
                format!(
                    "{} of {} selected proxies refused generation {generation}{first}",
                    r.rejected, r.selected
                ),
            )
        } else if r.selected == 0 {
            (
                true,
                "NoSelectedProxies",
                format!(
                    "generation {generation} (sha256 {f}) is accepted; no connected proxy selects \
                     it"
                ),
            )
        } else if r.updated < r.selected {
            (
                false,
                "RollingOut",
                format!(
                    "{} of {} selected proxies run generation {generation} (sha256 {f})",
                    r.updated, r.selected
                ),
            )
        } else {
            (
                true,
                "RolledOut",
                format!(
                    "all {} selected proxies run generation {generation} (sha256 {f})",
                    r.selected
                ),
            )
        }
    };
    let (degraded, degraded_reason, degraded_message) = match problem {
        Some(p) => (
            true,
            p.reason,
            format!("generation {generation}: {}; {in_service}", p.message),
        ),
        None if ready_reason == "ProxiesRejected" => {
            (true, "ProxiesRejected", ready_message.clone())
        }
        None => (false, "AsExpected", "nothing needs attention".to_owned()),
    };
    let conditions = vec![
        condition(
            "Ready",
            ready,
            ready_reason,
            ready_message,
            generation,
            previous,
            now,
        ),
        condition(
            "Degraded",
            degraded,
            degraded_reason,
            degraded_message,
            generation,
            previous,
            now,
        ),
    ];
    WasmFilterStatus {
        observed_generation: Some(generation),
        conditions,
        serving_generation: serving.map(|(generation, _)| generation),
        serving_sha256: serving.map(|(_, sha256)| sha256.to_owned()),
        rollout,
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: i64,
    previous: Option<&WasmFilterStatus>,
    now: SystemTime,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| humantime::format_rfc3339_seconds(now).to_string());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// Rollout figures of `filter` over the connected proxies it selects.
fn rollout(filter: &CatalogFilter, proxies: &[ProxyStatus], root_namespace: &str) -> Rollout {
    let name = filter.qualified_name();
    let mut rollout = Rollout::default();
    for proxy in proxies
        .iter()
        .filter(|p| p.connected && filter.selects(&p.identity, root_namespace))
    {
        rollout.selected += 1;
        let sent = proxy.filters.iter().any(|f| {
            f.name == name && f.generation == filter.generation && f.sha256 == filter.module_sha256
        });
        if !sent {
            continue;
        }
        let answered = proxy
            .last_report
            .as_ref()
            .filter(|r| r.version == proxy.sent_version);
        match answered {
            Some(report) if report.accepted => rollout.updated += 1,
            Some(report) => {
                let reasons: Vec<&str> = report
                    .errors
                    .iter()
                    .filter(|e| e.filter == name || e.filter.is_empty())
                    .map(|e| e.message.as_str())
                    .collect();
                if !reasons.is_empty() {
                    rollout.rejected += 1;
                    if rollout.failures.len() < MAX_LISTED_FAILURES {
                        rollout.failures.push(ProxyFailure {
                            proxy: format!("{}/{}", proxy.identity.namespace, proxy.identity.name),
                            message: reasons.join("; "),
                        });
                    }
                }
            }
            None => {}
        }
    }
    rollout
}

/// The first 12 hex digits of a digest, as in messages.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ProxyIdentity;
    use crate::definition::{FailurePolicy, MatchSpec, ModuleSource, Phase, WasmFilterSpec};
    use crate::status::{ReportError, ReportStatus, SentFilter};

    const SHA_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SHA_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn object(generation: i64) -> WasmFilterResource {
        let mut object = WasmFilterResource::new(
            "greeter",
            WasmFilterSpec {
                module: ModuleSource {
                    oci: Some("registry.example/greeter:1".to_owned()),
                    ..ModuleSource::default()
                },
                sha256: None,
                pull_policy: PullPolicy::IfNotPresent,
                pull_secret: None,
                config: None,
                selector: Default::default(),
                phase: Phase::Unspecified,
                priority: 0,
                match_: None,
                failure_policy: FailurePolicy::FailClosed,
                time_budget: None,
                max_memory: None,
            },
        );
        object.metadata.namespace = Some("shop".to_owned());
        object.metadata.generation = Some(generation);
        object
    }

    fn accepted(generation: i64, sha: &str) -> Accepted {
        Accepted {
            filter: CatalogFilter {
                namespace: "shop".to_owned(),
                name: "greeter".to_owned(),
                generation,
                settings: FilterSettings {
                    match_labels: BTreeMap::new(),
                    phase: Phase::Unspecified,
                    priority: 0,
                    match_spec: MatchSpec::default(),
                    failure_policy: FailurePolicy::FailClosed,
                    time_budget_ms: 0,
                    max_memory_bytes: 0,
                    config_json: String::new(),
                },
                module_sha256: sha.to_owned(),
            },
            module: Bytes::new(),
        }
    }

    fn entry(generation: i64, accepted: Option<Accepted>, problem: Option<Problem>) -> Entry {
        Entry {
            object: Arc::new(object(generation)),
            accepted,
            problem,
            resolving: None,
            retry_at: None,
            backoff: Duration::from_secs(1),
            restored: None,
        }
    }

    /// A connected proxy in `namespace` that was sent `greeter` at `generation`/`sha` in
    /// snapshot 7 and answered `report` (ACK when `None` errors).
    fn proxy(
        name: &str,
        namespace: &str,
        sent: Option<(i64, &str)>,
        answer: Option<Result<(), &str>>,
    ) -> ProxyStatus {
        ProxyStatus {
            identity: ProxyIdentity {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                labels: BTreeMap::new(),
            },
            connected: true,
            connected_at: SystemTime::UNIX_EPOCH,
            disconnected_at: None,
            sent_version: 7,
            serving_version: if matches!(answer, Some(Ok(()))) { 7 } else { 6 },
            last_report: answer.map(|a| ReportStatus {
                version: 7,
                accepted: a.is_ok(),
                errors: match a {
                    Ok(()) => Vec::new(),
                    Err(message) => vec![ReportError {
                        filter: "shop/greeter".to_owned(),
                        message: message.to_owned(),
                    }],
                },
            }),
            filters: sent
                .map(|(generation, sha)| SentFilter {
                    name: "shop/greeter".to_owned(),
                    sha256: sha.to_owned(),
                    generation,
                })
                .into_iter()
                .collect(),
        }
    }

    fn ready(status: &WasmFilterStatus) -> (&str, &str, &str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    fn degraded(status: &WasmFilterStatus) -> (&str, &str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .expect("Degraded");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn rolled_out_when_every_selected_connected_proxy_acked_this_generation() {
        let proxies = [
            proxy("a", "shop", Some((2, SHA_1)), Some(Ok(()))),
            proxy("b", "shop", Some((2, SHA_1)), Some(Ok(()))),
            // Another namespace: not selected.
            proxy("c", "billing", None, Some(Ok(()))),
        ];
        let status = compute_status(
            &entry(2, Some(accepted(2, SHA_1)), None),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        assert_eq!(ready(&status).0, "True");
        assert_eq!(ready(&status).1, "RolledOut");
        assert_eq!(degraded(&status), ("False", "AsExpected"));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.serving_generation, Some(2));
        assert_eq!(status.serving_sha256.as_deref(), Some(SHA_1));
        let rollout = status.rollout.expect("rollout");
        assert_eq!(
            (rollout.selected, rollout.updated, rollout.rejected),
            (2, 2, 0)
        );
    }

    #[test]
    fn rolling_out_counts_proxies_still_on_the_old_generation_or_unanswered() {
        let proxies = [
            proxy("a", "shop", Some((2, SHA_1)), Some(Ok(()))),
            proxy("b", "shop", Some((1, SHA_2)), Some(Ok(()))),
            proxy("c", "shop", Some((2, SHA_1)), None),
        ];
        let status = compute_status(
            &entry(2, Some(accepted(2, SHA_1)), None),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "RollingOut"));
        assert!(message.starts_with("1 of 3 selected proxies"), "{message}");
        let rollout = status.rollout.expect("rollout");
        assert_eq!(
            (rollout.selected, rollout.updated, rollout.rejected),
            (3, 1, 0)
        );
    }

    #[test]
    fn a_proxy_nack_degrades_and_names_the_proxy_and_its_reason() {
        let mut disconnected = proxy("d", "shop", Some((2, SHA_1)), Some(Err("old news")));
        disconnected.connected = false;
        let proxies = [
            proxy("a", "shop", Some((2, SHA_1)), Some(Ok(()))),
            proxy("b", "shop", Some((2, SHA_1)), Some(Err("out of memory"))),
            disconnected,
        ];
        let status = compute_status(
            &entry(2, Some(accepted(2, SHA_1)), None),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "ProxiesRejected"));
        assert!(message.contains("shop/b says out of memory"), "{message}");
        assert_eq!(degraded(&status), ("True", "ProxiesRejected"));
        let rollout = status.rollout.expect("rollout");
        assert_eq!(
            (rollout.selected, rollout.updated, rollout.rejected),
            (2, 1, 1)
        );
        assert_eq!(
            rollout.failures,
            [ProxyFailure {
                proxy: "shop/b".to_owned(),
                message: "out of memory".to_owned()
            }]
        );
    }

    #[test]
    fn a_refused_generation_keeps_the_previous_one_in_service_and_says_so() {
        let proxies = [proxy("a", "shop", Some((2, SHA_1)), Some(Ok(())))];
        let problem = Problem {
            generation: 3,
            reason: "ConfigRejected",
            message: "greeting must not be empty".to_owned(),
        };
        let status = compute_status(
            &entry(3, Some(accepted(2, SHA_1)), Some(problem)),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "ConfigRejected"));
        assert!(message.contains("greeting must not be empty"), "{message}");
        assert!(
            message.contains("generation 2 (sha256 111111111111) stays in service"),
            "{message}"
        );
        assert_eq!(degraded(&status), ("True", "ConfigRejected"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.serving_generation, Some(2));
        // The rollout figures are those of generation 2, which runs everywhere.
        assert_eq!(status.rollout.expect("rollout").updated, 1);
    }

    #[test]
    fn nothing_in_service_and_no_proxies_are_said_plainly() {
        let problem = Problem {
            generation: 1,
            reason: "FetchFailed",
            message: "registry unreachable".to_owned(),
        };
        let status = compute_status(
            &entry(1, None, Some(problem)),
            &[],
            "weft-system",
            SystemTime::now(),
        );
        assert!(
            ready(&status)
                .2
                .contains("no generation of this filter is in service"),
            "{status:?}"
        );
        assert_eq!(status.serving_generation, None);
        assert_eq!(status.rollout, None);

        let status = compute_status(
            &entry(1, Some(accepted(1, SHA_1)), None),
            &[],
            "weft-system",
            SystemTime::now(),
        );
        assert_eq!(ready(&status).0, "True");
        assert_eq!(ready(&status).1, "NoSelectedProxies");

        let mut resolving = entry(2, Some(accepted(1, SHA_1)), None);
        resolving.resolving = Some(2);
        let status = compute_status(&resolving, &[], "weft-system", SystemTime::now());
        assert_eq!(ready(&status).1, "Resolving");
    }

    #[test]
    fn transition_times_change_only_when_the_condition_status_does() {
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let later = early + Duration::from_secs(60);
        let mut e = entry(1, Some(accepted(1, SHA_1)), None);
        let first = compute_status(&e, &[], "weft-system", early);
        Arc::make_mut(&mut e.object).status = Some(first.clone());
        // Same condition statuses: the times stay.
        let same = compute_status(&e, &[], "weft-system", later);
        assert_eq!(first.conditions, same.conditions);
        assert!(same_status(&first, &same));
        // Ready turns False: its time moves, Degraded's does not.
        let proxies = [proxy("a", "shop", Some((1, SHA_1)), None)];
        let moved = compute_status(&e, &proxies, "weft-system", later);
        let time = |s: &WasmFilterStatus, t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.last_transition_time.clone())
        };
        assert_ne!(time(&moved, "Ready"), time(&first, "Ready"));
        assert_eq!(time(&moved, "Degraded"), time(&first, "Degraded"));
        assert!(!same_status(&first, &moved));
    }

    /// An entry as a restarted control plane has it: generation 1 with `SHA_1` rolled out to
    /// one proxy, recorded by the earlier run; the object now at `generation`.
    fn restored_entry(generation: i64) -> Entry {
        let recorded = WasmFilterStatus {
            observed_generation: Some(1),
            conditions: Vec::new(),
            serving_generation: Some(1),
            serving_sha256: Some(SHA_1.to_owned()),
            rollout: Some(Rollout {
                selected: 1,
                updated: 1,
                rejected: 0,
                failures: Vec::new(),
            }),
        };
        let mut e = entry(generation, None, None);
        Arc::make_mut(&mut e.object).status = Some(recorded.clone());
        e.restored = Restored::from_status(Some(&recorded));
        e.resolving = Some(generation);
        e
    }

    #[test]
    fn a_restart_keeps_the_recorded_status_until_proxies_report() {
        let now = SystemTime::now();
        let mut e = restored_entry(1);
        assert_eq!(
            e.restored
                .as_ref()
                .map(|r| (r.generation, r.sha256.as_str())),
            Some((1, SHA_1))
        );
        // Resolving again the generation the status describes: nothing new to say, even
        // once proxies had time to come back.
        let status = compute_status(&e, &[], "weft-system", now);
        assert_eq!(status.serving_generation, Some(1));
        assert!(keeps_recorded_status(&e, &status, true));
        assert!(keeps_recorded_status(&e, &status, false));

        // Accepted again, the same digest: no proxy back yet, or not answered yet.
        e.resolving = None;
        e.accepted = Some(accepted(1, SHA_1));
        let status = compute_status(&e, &[], "weft-system", now);
        assert_eq!(ready(&status).1, "NoSelectedProxies");
        assert!(keeps_recorded_status(&e, &status, true));
        let waiting = [proxy("a", "shop", Some((1, SHA_1)), None)];
        let status = compute_status(&e, &waiting, "weft-system", now);
        assert_eq!(ready(&status), ("False", "RollingOut", ready(&status).2));
        assert!(keeps_recorded_status(&e, &status, true));
        // After the grace period that is what it is.
        assert!(!keeps_recorded_status(&e, &status, false));

        // Reports are news: all run it, or one refused it.
        let acked = [proxy("a", "shop", Some((1, SHA_1)), Some(Ok(())))];
        let status = compute_status(&e, &acked, "weft-system", now);
        assert_eq!(ready(&status).1, "RolledOut");
        assert!(!keeps_recorded_status(&e, &status, true));
        let nacked = [proxy("a", "shop", Some((1, SHA_1)), Some(Err("no memory")))];
        let status = compute_status(&e, &nacked, "weft-system", now);
        assert_eq!(ready(&status).1, "ProxiesRejected");
        assert!(!keeps_recorded_status(&e, &status, true));

        // A different digest (a moved tag under `pullPolicy: Always`) is a new rollout.
        e.accepted = Some(accepted(1, SHA_2));
        let status = compute_status(&e, &waiting, "weft-system", now);
        assert!(!keeps_recorded_status(&e, &status, true));

        // A refusal of the recorded generation is news too.
        let mut refused = restored_entry(1);
        refused.resolving = None;
        refused.problem = Some(Problem {
            generation: 1,
            reason: "FetchFailed",
            message: "registry unreachable".to_owned(),
        });
        let status = compute_status(&refused, &[], "weft-system", now);
        assert!(!keeps_recorded_status(&refused, &status, true));

        // Objects no earlier run wrote a status for are reported as they are.
        let fresh = entry(1, Some(accepted(1, SHA_1)), None);
        let status = compute_status(&fresh, &waiting, "weft-system", now);
        assert!(!keeps_recorded_status(&fresh, &status, true));
    }

    #[test]
    fn a_spec_changed_during_a_restart_keeps_the_recorded_generation_in_service() {
        let e = restored_entry(2);
        let status = compute_status(&e, &[], "weft-system", SystemTime::now());
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "Resolving"));
        assert!(
            message.contains("generation 1 (sha256 111111111111) stays in service"),
            "{message}"
        );
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.serving_generation, Some(1));
        assert_eq!(status.serving_sha256.as_deref(), Some(SHA_1));
        assert_eq!(status.rollout.map(|r| r.updated), Some(1));
        // A new generation is news: written at once.
        assert!(!keeps_recorded_status(
            &e,
            &compute_status(&e, &[], "weft-system", SystemTime::now()),
            true
        ));
    }
}
