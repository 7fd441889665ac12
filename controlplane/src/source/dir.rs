//! The directory source: one `WasmFilter` definition per `*.yaml`/`*.yml` file in a directory,
//! with module files next to them (or in subdirectories), watched for changes. Files with
//! `kind: Service` define services instead ([`crate::service`]); they are published to the
//! services catalog, apart from the filters, so a changed endpoint resends no filter.
//!
//! **Bad input loses nothing.** A file that fails to parse or check, or whose module is
//! missing or does not match its `sha256`, keeps its filter's last good definition in the
//! catalog and records an error; fixing the file clears it. Deleting a file removes its
//! filter. A definition that was never good is simply absent (plus the error).
//!
//! Definitions are read from the directory itself, not its subdirectories; files whose names
//! start with `.` (editor swap and lock files) are skipped. The whole directory tree is
//! watched, so changes to module files in subdirectories count; module files outside it are
//! read at every rescan but their changes alone do not trigger one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use notify::event::{AccessKind, EventKind, MetadataKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_yaml::error_at;

use weft_api::v1;

use crate::catalog::{Catalog, CatalogFilter, SourceError};
use crate::control_plane::lock;
use crate::definition::{ParsedDefinition, parse_file};
use crate::service::{is_service, parse_service_file};
use crate::services::{ServiceMap, service_key};
use crate::{ControlPlane, Error};

/// How long to wait after a change for more changes (an editor's save is often several
/// events) before rescanning.
const DEBOUNCE: Duration = Duration::from_millis(15);

/// A running directory source. Dropping it stops watching; the catalog stays published.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    control_plane: ControlPlane,
    _watcher: RecommendedWatcher,
    task: JoinHandle<()>,
}

impl DirSource {
    /// Reads every definition in `dir`, publishes the catalog to `control_plane`, and keeps
    /// republishing as files change. Errors if `dir` cannot be read or watched; bad
    /// definitions are not errors here (see [`errors`](Self::errors)). Must be called within a
    /// Tokio runtime.
    pub fn start(dir: impl Into<PathBuf>, control_plane: ControlPlane) -> Result<Self, Error> {
        let dir = dir.into();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::NoRuntime("the directory source"))?;
        std::fs::read_dir(&dir).map_err(|error| Error::Read {
            path: dir.clone(),
            error,
        })?;

        // Watch before the first scan, so that no change falls between the two.
        let (changes, mut changed) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(event) => !matches!(
                        event.kind,
                        EventKind::Access(
                            AccessKind::Read | AccessKind::Open(_) | AccessKind::Close(_)
                        ) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
                    ),
                    // Events may have been lost: rescan to be sure.
                    Err(_) => true,
                };
                if relevant {
                    let _ = changes.send(());
                }
            })
            .map_err(|error| Error::Watch {
                path: dir.clone(),
                error,
            })?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|error| Error::Watch {
                path: dir.clone(),
                error,
            })?;

        let scanner = Arc::new(Mutex::new(Scanner::new(dir.clone(), control_plane.clone())));
        lock(&scanner).rescan()?;

        let task = runtime.spawn(async move {
            while changed.recv().await.is_some() {
                tokio::time::sleep(DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
                let scanner = Arc::clone(&scanner);
                let scan = tokio::task::spawn_blocking(move || lock(&scanner).rescan()).await;
                match scan {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(
                        error = %e,
                        "cannot rescan filter definitions; keeping the current catalog"
                    ),
                    Err(e) => tracing::warn!(error = %e, "filter definition rescan failed"),
                }
            }
        });
        Ok(Self {
            dir,
            control_plane,
            _watcher: watcher,
            task,
        })
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The problems with the directory's files as of the last scan, by file.
    pub fn errors(&self) -> Vec<SourceError> {
        self.control_plane.source_errors()
    }
}

impl Drop for DirSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A definition file that was good: what it defines and what went into it.
#[derive(Debug, Clone)]
struct Good {
    parsed: ParsedDefinition,
    module_sha256: String,
    module: Bytes,
    /// sha256 of the definition file's text and the module digest: a change of either is a
    /// new generation.
    fingerprint: [u8; 32],
}

impl Good {
    fn key(&self) -> String {
        let meta = &self.parsed.object.metadata;
        format!("{}/{}", meta.namespace, meta.name)
    }
}

/// A service file that was good: its text (unchanged text is not parsed again) and service.
#[derive(Debug, Clone)]
struct GoodService {
    src: String,
    service: Arc<v1::Service>,
}

/// The source's memory between scans.
#[derive(Debug)]
struct Scanner {
    dir: PathBuf,
    control_plane: ControlPlane,
    /// The last good definition of each file present.
    files: BTreeMap<PathBuf, Good>,
    /// The last good service of each service file present.
    service_files: BTreeMap<PathBuf, GoodService>,
    /// Per service `namespace/name`: the file it was last published from.
    services_from: HashMap<String, PathBuf>,
    /// Per `namespace/name`: the fingerprint and generation last published. Kept after the
    /// filter goes, so a filter that comes back does not reuse a generation.
    generations: HashMap<String, ([u8; 32], i64)>,
    /// Per `namespace/name`: the file it was last published from, which wins a duplicate.
    published_from: HashMap<String, PathBuf>,
    /// What was last published, to publish only changes.
    published: Option<Vec<CatalogFilter>>,
    /// The errors of the last scan, to log each only when it first appears.
    errors: HashSet<SourceError>,
}

impl Scanner {
    fn new(dir: PathBuf, control_plane: ControlPlane) -> Self {
        Self {
            dir,
            control_plane,
            files: BTreeMap::new(),
            service_files: BTreeMap::new(),
            services_from: HashMap::new(),
            generations: HashMap::new(),
            published_from: HashMap::new(),
            published: None,
            errors: HashSet::new(),
        }
    }

    /// Reads the directory again and publishes the result if it changed. Errors only if the
    /// directory itself cannot be listed; then nothing changes.
    fn rescan(&mut self) -> Result<(), Error> {
        tracing::debug!(dir = %self.dir.display(), "scanning filter definitions");
        let paths = self.definition_files()?;
        let mut errors = Vec::new();
        self.files.retain(|path, _| paths.contains(path));
        self.service_files.retain(|path, _| paths.contains(path));
        for path in &paths {
            if let Err(message) = self.load_file(path) {
                errors.push(SourceError {
                    file: path.display().to_string(),
                    message,
                });
            }
        }
        self.publish_services(&mut errors);
        let keys = self.files.iter().map(|(path, good)| (path, good.key()));
        let winners = pick_winners(keys, &self.published_from, "filter", &mut errors);
        let mut catalog = Catalog::default();
        for (key, path) in &winners {
            let Some(good) = self.files.get(path) else {
                continue;
            };
            let generation = match self.generations.get(key) {
                Some((fingerprint, generation)) if *fingerprint == good.fingerprint => *generation,
                Some((_, generation)) => generation + 1,
                None => 1,
            };
            self.generations
                .insert(key.clone(), (good.fingerprint, generation));
            let meta = &good.parsed.object.metadata;
            catalog.filters.push(CatalogFilter {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                generation,
                settings: good.parsed.settings.clone(),
                module_sha256: good.module_sha256.clone(),
            });
            catalog
                .modules
                .insert(good.module_sha256.clone(), good.module.clone());
        }
        self.published_from = winners.into_iter().collect();
        self.report_errors(errors);
        if self.published.as_ref() != Some(&catalog.filters) {
            tracing::info!(
                dir = %self.dir.display(),
                filters = catalog.filters.len(),
                errors = self.errors.len(),
                "publishing filter definitions"
            );
            self.published = Some(catalog.filters.clone());
            self.control_plane.publish(catalog);
        }
        Ok(())
    }

    /// The definition files of the directory.
    fn definition_files(&self) -> Result<HashSet<PathBuf>, Error> {
        let read_error = |error| Error::Read {
            path: self.dir.clone(),
            error,
        };
        let mut paths = HashSet::new();
        for entry in std::fs::read_dir(&self.dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            // Follows symlinks; a dangling one is reported by `load`.
            let dir = path.is_dir();
            if yaml && !hidden && !dir {
                paths.insert(path);
            }
        }
        Ok(paths)
    }

    /// Reads one definition file into `files` or `service_files`; a bad one keeps what the
    /// file last defined.
    fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        if is_service(&src) {
            if self
                .service_files
                .get(path)
                .is_some_and(|good| good.src == src)
            {
                return Ok(());
            }
            let service = parse_service_file(&src, path).map_err(|e| e.to_string())?;
            self.files.remove(path);
            self.service_files.insert(
                path.to_owned(),
                GoodService {
                    src,
                    service: Arc::new(service),
                },
            );
        } else {
            let good = load(path, &src)?;
            self.service_files.remove(path);
            self.files.insert(path.to_owned(), good);
        }
        Ok(())
    }

    /// Publishes the services of the service files (the services catalog skips a publish
    /// that changes nothing).
    fn publish_services(&mut self, errors: &mut Vec<SourceError>) {
        let keys = self
            .service_files
            .iter()
            .map(|(path, good)| (path, service_key(&good.service)));
        let winners = pick_winners(keys, &self.services_from, "service", errors);
        let mut services = ServiceMap::new();
        for (key, path) in &winners {
            if let Some(good) = self.service_files.get(path) {
                services.insert(key.clone(), Arc::clone(&good.service));
            }
        }
        self.services_from = winners.into_iter().collect();
        let count = services.len();
        if self.control_plane.publish_services(services) {
            tracing::info!(
                dir = %self.dir.display(),
                services = count,
                version = self.control_plane.services_version(),
                "publishing services"
            );
        }
    }

    /// Logs errors that are new since the last scan and hands all to the control plane.
    fn report_errors(&mut self, mut errors: Vec<SourceError>) {
        errors.sort_by(|a, b| (&a.file, &a.message).cmp(&(&b.file, &b.message)));
        for error in &errors {
            if !self.errors.contains(error) {
                tracing::warn!(
                    file = %error.file,
                    "bad definition (the last good one, if any, stays): {}",
                    error.message
                );
            }
        }
        let now: HashSet<SourceError> = errors.iter().cloned().collect();
        for fixed in self.errors.difference(&now) {
            if !now.iter().any(|e| e.file == fixed.file) {
                tracing::info!(file = %fixed.file, "definition is good again");
            }
        }
        self.errors = now;
        self.control_plane.set_source_errors(errors);
    }
}

/// For every `namespace/name` (of a `what`: filter or service) defined by several files,
/// picks the file it was last published from (or else the first by path) and records an
/// error for the others.
fn pick_winners<'a>(
    keys: impl Iterator<Item = (&'a PathBuf, String)>,
    published_from: &HashMap<String, PathBuf>,
    what: &str,
    errors: &mut Vec<SourceError>,
) -> Vec<(String, PathBuf)> {
    let mut by_key: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    for (path, key) in keys {
        by_key.entry(key).or_default().push(path);
    }
    let mut winners = Vec::new();
    for (key, paths) in by_key {
        let winner = published_from
            .get(&key)
            .filter(|p| paths.contains(p))
            .or(paths.first().copied())
            .cloned();
        let Some(winner) = winner else { continue };
        for loser in paths.into_iter().filter(|p| **p != winner) {
            errors.push(SourceError {
                file: loser.display().to_string(),
                message: format!(
                    "{}: {what} {key} is also defined in {}; each namespace/name may be \
                     defined by one file only (this file is ignored)",
                    loser.display(),
                    winner.display()
                ),
            });
        }
        winners.push((key, winner));
    }
    winners
}

/// Checks and resolves one definition file's text `src`. The error is a complete message,
/// starting with the file (and line and field when known).
fn load(path: &Path, src: &str) -> Result<Good, String> {
    let parsed = parse_file(src, path).map_err(|e| e.to_string())?;
    let module = std::fs::read(&parsed.module_path).map_err(|e| {
        error_at(
            src,
            path,
            &["spec", "module", "file"],
            format!("cannot read module {}: {e}", parsed.module_path.display()),
        )
        .to_string()
    })?;
    let module_sha256 = crate::catalog::sha256_hex(&module);
    if let Some(declared) = &parsed.object.spec.sha256
        && *declared != module_sha256
    {
        return Err(error_at(
            src,
            path,
            &["spec", "sha256"],
            format!(
                "module {} has sha256 {module_sha256}, not the declared {declared}; update \
                 `sha256` if the module changed on purpose",
                parsed.module_path.display()
            ),
        )
        .to_string());
    }
    let mut fingerprint = Sha256::new();
    fingerprint.update(src.as_bytes());
    fingerprint.update(module_sha256.as_bytes());
    Ok(Good {
        parsed,
        module_sha256,
        module: Bytes::from(module),
        fingerprint: fingerprint.finalize().into(),
    })
}
