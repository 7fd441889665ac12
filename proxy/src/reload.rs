//! Hot reload: a changed config file or a new control plane snapshot becomes new route tables,
//! built off the request path and swapped in atomically. Requests in flight finish on the
//! tables they started with; a change that fails to build changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::Watcher as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::build::{Builder, DynamicFilter, Used};
use crate::config::{Config, ControlPlaneConfig};
use crate::lifecycle::Error;
use crate::metrics::Metrics;
use crate::route::ListenerState;

/// How long to wait after a file event for the writes that usually follow it.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// What the proxy serves and how to rebuild it. One reload at a time: both sources take the
/// lock, on a blocking thread.
pub(crate) struct Reloader {
    state: Mutex<State>,
    listeners: Vec<Arc<ListenerState>>,
    metrics: Arc<Metrics>,
    snapshot_version: AtomicU64,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("listeners", &self.listeners.len())
            .field("snapshot_version", &self.snapshot_version)
            .finish_non_exhaustive()
    }
}

/// The inputs of the serving tables.
pub(crate) struct State {
    pub(crate) builder: Builder,
    /// The config file as last applied.
    pub(crate) config: Config,
    /// The control plane's filters as last applied.
    pub(crate) dynamic: Vec<DynamicFilter>,
    /// The snapshot they came from (without module bytes).
    pub(crate) served: Option<weft_api::v1::Snapshot>,
}

impl Reloader {
    pub(crate) fn new(
        builder: Builder,
        config: Config,
        restored: Option<(Vec<DynamicFilter>, weft_api::v1::Snapshot)>,
        listeners: Vec<Arc<ListenerState>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (dynamic, served) = match restored {
            Some((dynamic, snapshot)) => (dynamic, Some(snapshot)),
            None => (Vec::new(), None),
        };
        let version = served.as_ref().map_or(0, |s| s.version);
        metrics.set_snapshot_version(version);
        Self {
            state: Mutex::new(State {
                builder,
                config,
                dynamic,
                served,
            }),
            listeners,
            metrics,
            snapshot_version: AtomicU64::new(version),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        weft_runtime::lock(&self.state)
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn control_plane(&self) -> Option<ControlPlaneConfig> {
        self.lock().config.control_plane.clone()
    }

    pub(crate) fn identity(&self) -> Option<crate::config::IdentityConfig> {
        self.lock().config.identity.clone()
    }

    pub(crate) fn snapshot_version(&self) -> u64 {
        self.snapshot_version.load(Ordering::Acquire)
    }

    pub(crate) fn set_snapshot_version(&self, version: u64) {
        self.snapshot_version.store(version, Ordering::Release);
        self.metrics.set_snapshot_version(version);
    }

    /// Build tables from `state` with `dynamic` as the control plane's filters and swap them
    /// in; `used` already holds what the caller configured for this generation.
    pub(crate) fn apply(
        &self,
        state: &mut State,
        dynamic: Vec<DynamicFilter>,
        used: Used,
    ) -> Result<(), Error> {
        self.rebuild(&mut state.builder, &state.config, &dynamic, used)?;
        state.dynamic = dynamic;
        Ok(())
    }

    /// Build every listener's table from `config` and `dynamic`, let go of what they do not
    /// use, and swap them in.
    fn rebuild(
        &self,
        builder: &mut Builder,
        config: &Config,
        dynamic: &[DynamicFilter],
        mut used: Used,
    ) -> Result<(), Error> {
        let tables = builder.tables(config, dynamic, &mut used)?;
        builder.commit(used);
        for (listener, table) in self.listeners.iter().zip(tables) {
            listener.table.store(Arc::new(table));
        }
        Ok(())
    }

    /// Re-read the config file and apply it; on any error keep serving what was there.
    pub(crate) fn reload_file(&self) -> Result<(), Error> {
        let result = self.try_reload_file();
        match &result {
            Ok(()) => {
                self.metrics.config_update("file", "applied");
                tracing::info!("config file reloaded");
            }
            Err(e) => {
                self.metrics.config_update("file", "rejected");
                tracing::error!(error = %e, "config file change rejected; still serving the previous config");
            }
        }
        result
    }

    fn try_reload_file(&self) -> Result<(), Error> {
        let mut state = self.lock();
        let next = Config::load(&state.config.source)?;
        needs_restart(&state.config, &next).map_err(|message| {
            Error::Config(crate::config::ConfigError {
                file: next.source.clone(),
                line: None,
                column: None,
                field: String::new(),
                message,
            })
        })?;
        let state = &mut *state;
        self.rebuild(&mut state.builder, &next, &state.dynamic, Used::default())?;
        state.config = next;
        Ok(())
    }

    /// The config file and the module files it names, as file events report them.
    fn watched_files(&self) -> HashSet<PathBuf> {
        let state = self.lock();
        std::iter::once(state.config.source.as_path())
            .chain(
                state
                    .config
                    .listeners
                    .iter()
                    .flat_map(|l| l.filters.iter().map(|f| f.module.as_path())),
            )
            .filter_map(canonical)
            .collect()
    }
}

/// What a reload cannot change, as a message naming it; the rest is swapped in place.
fn needs_restart(old: &Config, new: &Config) -> Result<(), String> {
    let shape = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| (l.name.clone(), l.address, l.direction))
            .collect::<Vec<_>>()
    };
    let fixed = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| (l.paths, l.tls, l.peer_identity_header.clone()))
            .collect::<Vec<_>>()
    };
    let mut changed = Vec::new();
    if shape(old) != shape(new) {
        changed.push("listeners (names, addresses or directions)");
    } else if fixed(old) != fixed(new) {
        changed.push("listeners (paths, tls or peer_identity_header)");
    }
    if old.identity != new.identity {
        changed.push("identity");
    }
    if old.limits != new.limits {
        changed.push("limits");
    }
    if old.admin != new.admin {
        changed.push("admin");
    }
    if old.cache_dir != new.cache_dir {
        changed.push("cache_dir");
    }
    if old.control_plane != new.control_plane {
        changed.push("control_plane");
    }
    if old.discovery != new.discovery {
        changed.push("discovery");
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} changed: restart the proxy to apply that (filters, routes and upstreams reload in place)",
            changed.join(", ")
        ))
    }
}

/// `path` with its directory resolved, as notify names files in a watched directory.
fn canonical(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// Reload when the config file or one of its module files changes. Directories are watched,
/// not files, so editors that replace a file by renaming a new one over it are seen too.
pub(crate) fn watch_file(
    reloader: &Arc<Reloader>,
    tasks: &mut JoinSet<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let files = reloader.watched_files();
    if files.is_empty() {
        return; // An inline config: nothing to watch.
    }
    let dirs: HashSet<PathBuf> = files
        .iter()
        .filter_map(|f| Some(f.parent()?.to_owned()))
        .collect();
    // Events are filtered on notify's thread: a busy file beside the config (a log) must not
    // wake the proxy's workers on every write (`bench/` once measured exactly that).
    let watched = Arc::new(ArcSwap::from_pointee(files));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let filter = Arc::clone(&watched);
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                Ok(event) => {
                    !event.kind.is_access() && {
                        let files = filter.load();
                        event.paths.iter().any(|p| files.contains(p))
                    }
                }
                Err(_) => true, // The task logs it.
            };
            if relevant {
                let _ = tx.send(event);
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file: changes need a restart");
                return;
            }
        };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a config directory: changes there need a restart");
        }
    }
    let reloader = reloader.clone();
    tasks.spawn(async move {
        let _watcher = watcher; // Dropping it stops the events.
        loop {
            tokio::select! {
                event = rx.recv() => {
                    let Some(event) = event else { return };
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "config file watch failed");
                        continue;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    let r = reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || r.reload_file()).await;
                    // New module paths may have come with the change.
                    let r = reloader.clone();
                    if let Ok(now) = tokio::task::spawn_blocking(move || r.watched_files()).await {
                        watched.store(Arc::new(now));
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    });
}
