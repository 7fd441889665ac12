//! The controller: follows the `WasmFilter` watch, resolves every new generation in a task of
//! its own, retries failed fetches and resyncs `pullPolicy: Always` modules, and publishes the
//! accepted filters as one catalog once the first listing is resolved.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_objects};
use tokio::sync::{mpsc, watch};

use super::resolve::{module_cache_key, resolve};
use super::restart::Restored;
use super::state::{Accepted, Entry, Problem, State};
use super::{Key, KubernetesOptions, key_of};
use crate::catalog::{Catalog, CatalogFilter, SourceError};
use crate::control_plane::{ControlPlane, lock};
use crate::crd::WasmFilterResource;
use crate::definition::PullPolicy;
use crate::fetch::Fetcher;
use crate::sandbox::Sandbox;

/// The outcome of resolving one generation.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) key: Key,
    pub(super) generation: i64,
    /// Where the module came from (see [`module_cache_key`]).
    pub(super) cache_key: String,
    pub(super) result: Result<Accepted, Problem>,
}

pub(super) struct Controller {
    pub(super) client: Client,
    pub(super) control_plane: ControlPlane,
    pub(super) options: KubernetesOptions,
    pub(super) fetcher: Fetcher,
    pub(super) sandbox: Sandbox,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) status_kick: watch::Sender<u64>,
    /// Modules fetched before, by source and expected digest, for `pullPolicy: IfNotPresent`.
    pub(super) modules: HashMap<String, (Bytes, String)>,
    /// The filters last published, to skip publishing an unchanged catalog.
    pub(super) published: Option<Vec<CatalogFilter>>,
    /// Whether the first complete listing has been resolved.
    pub(super) initial: Initial,
}

/// Publishing before every object of the first listing is resolved would hand proxies a
/// partial catalog, and they would drop the filters still being fetched.
#[derive(Debug)]
pub(super) enum Initial {
    /// The first listing has not completed.
    Listing,
    /// These objects of the first listing are being resolved.
    Resolving(HashSet<Key>),
    /// Publishing as things change.
    Done,
}

impl Controller {
    pub(super) async fn run(mut self) {
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
