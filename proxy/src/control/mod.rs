//! The control plane subscription: snapshots of filters in, ACK or NACK reports out.
//!
//! A snapshot is applied whole or not at all. Modules the proxy lacks are fetched (only those)
//! and checked against their sha256 digest before anything compiles them; modules compile and filters run `configure` on a
//! blocking thread, then the new tables are swapped in. Any failure is a NACK naming the
//! filter, and the proxy goes on serving what it had. The last good snapshot and its modules
//! are kept in `state_dir`, so a proxy that restarts while the control plane is down serves
//! them again. A control plane outage never touches traffic: the proxy reconnects with
//! backoff in the background.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use weft_api::v1::filter_distribution_client::FilterDistributionClient;
use weft_api::v1::{
    self as pb, FetchModuleRequest, FilterError, Hello, ProxyIdentity, Report, Snapshot,
    SubscribeRequest, subscribe_request::Kind,
};

use weft_identity::tls::MeshTls;
use weft_runtime::{FilterSpec, cache, error_chain};

use self::store::Store;
use crate::build::{Builder, DynamicFilter, Used};
use crate::chain::RequestMatch;
use crate::config::{ControlPlaneConfig, Direction, FailurePolicy, Isolation, filter_limits};
use crate::discovery::Registry;
use crate::identity::Identity as WorkloadIdentity;
use crate::reload::Reloader;

mod discovery;
mod store;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The last good snapshot's filters, configured, for a proxy starting while the control
/// plane may be down. Anything wrong with the saved state is logged and yields no filters.
pub(super) fn restore(
    cp: &ControlPlaneConfig,
    builder: &mut Builder,
    used: &mut Used,
) -> Option<(Vec<DynamicFilter>, Snapshot)> {
    let store = Store::new(&cp.state_dir);
    let snapshot = match store.load_snapshot() {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(file = %store.snapshot_path().display(), error = %e,
                "cannot read the last good snapshot; starting without control plane filters");
            return None;
        }
    };
    match prepare(builder, &store, &HashMap::new(), &snapshot, used) {
        Ok(dynamic) => {
            tracing::info!(
                version = snapshot.version,
                filters = dynamic.len(),
                "serving the last good control plane snapshot from disk"
            );
            Some((dynamic, snapshot))
        }
        Err(errors) => {
            let errors: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.filter, e.message))
                .collect();
            tracing::error!(file = %store.snapshot_path().display(), errors = ?errors,
                "cannot restore the last good snapshot; starting without control plane filters");
            None
        }
    }
}

/// Stay subscribed until shutdown, reconnecting with jittered exponential backoff.
///
/// With `identity` and no client certificate of its own, the proxy subscribes with its
/// workload certificate: it waits for the first one, and each reconnection uses the newest.
pub(super) async fn run(
    reloader: Arc<Reloader>,
    cp: ControlPlaneConfig,
    services: Option<Arc<Registry>>,
    identity: Option<WorkloadIdentity>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mesh = match identity {
        Some(identity) if cp.tls.as_ref().is_some_and(|t| t.client_cert.is_none()) => {
            tokio::select! {
                () = identity.installed() => {}
                _ = shutdown.changed() => return,
            }
            Some(identity.mesh)
        }
        _ => None,
    };
    let mut delay = BACKOFF_MIN;
    loop {
        let mut established = false;
        let outcome = tokio::select! {
            outcome = session(&reloader, &cp, services.as_ref(), mesh.as_deref(), &mut established) => outcome,
            _ = shutdown.changed() => return,
        };
        reloader.metrics().set_control_plane_connected(false);
        if established {
            delay = BACKOFF_MIN;
        }
        match outcome {
            Ok(()) => {
                tracing::warn!(address = %cp.address, "control plane closed the subscription; reconnecting")
            }
            Err(e) => tracing::warn!(address = %cp.address, error = %e, retry_in = ?delay,
                "control plane unavailable; serving the current chain"),
        }
        let jitter = delay.mul_f64(getrandom::u64().map_or(0.0, |r| (r % 1000) as f64 / 2000.0));
        tokio::select! {
            _ = tokio::time::sleep(delay + jitter) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// One subscription, until the stream ends or fails.
async fn session(
    reloader: &Arc<Reloader>,
    cp: &ControlPlaneConfig,
    services: Option<&Arc<Registry>>,
    mesh: Option<&MeshTls>,
    established: &mut bool,
) -> Result<(), String> {
    let endpoint = endpoint(cp, mesh)?;
    let channel = endpoint.connect().await.map_err(|e| error_chain(&e))?;
    let mut client = FilterDistributionClient::new(channel.clone())
        .max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(weft_api::MAX_MESSAGE_BYTES);
    let store = Store::new(&cp.state_dir);
    let (tx, rx) = mpsc::channel(4);
    let identity = ProxyIdentity {
        name: cp.name.clone(),
        namespace: cp.namespace.clone(),
        labels: cp.labels.clone().into_iter().collect(),
    };
    let hello = Hello {
        identity: Some(identity.clone()),
        module_digests: store.module_digests(),
        serving_version: reloader.snapshot_version(),
    };
    let send = |kind| SubscribeRequest { kind: Some(kind) };
    tx.send(send(Kind::Hello(hello)))
        .await
        .map_err(|_| "the request stream closed".to_owned())?;
    let mut snapshots = client
        .subscribe(ReceiverStream::new(rx))
        .await
        .map_err(|s| status_message(&s))?
        .into_inner();
    tracing::info!(address = %cp.address, "subscribed to the control plane");
    reloader.metrics().set_control_plane_connected(true);
    *established = true;
    // Services, on the same channel; the task ends with the session.
    let _discovery = services.map(|registry| {
        AbortOnDrop(tokio::spawn(discovery::watch_while_connected(
            channel.clone(),
            identity.clone(),
            registry.clone(),
        )))
    });
    let mut fetcher = FilterDistributionClient::new(channel)
        .max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES);
    while let Some(snapshot) = snapshots.message().await.map_err(|s| status_message(&s))? {
        // Read what is on disk and fetch the rest, before taking the reload lock.
        let (local, missing) = modules_on_disk(reloader, &store, &snapshot);
        let mut modules = Fetched {
            local,
            ..Fetched::default()
        };
        for digest in missing {
            match fetch(&mut fetcher, &identity, &digest).await {
                Ok(bytes) => {
                    modules.bytes.insert(digest, bytes);
                }
                Err(message) => {
                    modules.errors.insert(digest, message);
                }
            }
        }
        let r = reloader.clone();
        let state_dir = cp.state_dir.clone();
        let report = tokio::task::spawn_blocking(move || apply(&r, &state_dir, snapshot, modules))
            .await
            .map_err(|e| format!("applying a snapshot panicked: {e}"))?;
        tx.send(send(Kind::Report(report)))
            .await
            .map_err(|_| "the request stream closed".to_owned())?;
    }
    Ok(())
}

/// Aborts a task (and its watcher) when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The uncompiled modules of one snapshot: verified bytes from disk, bytes fetched (not yet
/// verified), or why they could not be had.
#[derive(Default)]
struct Fetched {
    local: HashMap<String, Bytes>,
    bytes: HashMap<String, Bytes>,
    errors: HashMap<String, String>,
}

/// The modules `snapshot` names that are not compiled yet: the bytes of those kept intact on
/// disk, and the digests of the others (a file whose bytes no longer match its name is
/// removed, and fetched again).
fn modules_on_disk(
    reloader: &Reloader,
    store: &Store,
    snapshot: &Snapshot,
) -> (HashMap<String, Bytes>, Vec<String>) {
    let mut wanted: Vec<&String> = snapshot
        .filters
        .iter()
        .map(|f| &f.module_sha256)
        .filter(|d| is_digest(d))
        .collect();
    wanted.sort();
    wanted.dedup();
    let uncompiled: Vec<&String> = {
        let state = reloader.lock();
        wanted
            .into_iter()
            .filter(|d| state.builder.cached_module(d).is_none())
            .collect()
    };
    let mut local = HashMap::new();
    let mut missing = Vec::new();
    for digest in uncompiled {
        match store.load_module(digest) {
            Ok(bytes) => {
                local.insert(digest.clone(), Bytes::from(bytes));
            }
            Err(_) => missing.push(digest.clone()),
        }
    }
    (local, missing)
}

/// One module's bytes, from its chunks.
async fn fetch(
    client: &mut FilterDistributionClient<tonic::transport::Channel>,
    identity: &ProxyIdentity,
    digest: &str,
) -> Result<Bytes, String> {
    let failed = |why: String| format!("cannot fetch module {digest}: {why}");
    let mut chunks = client
        .fetch_module(FetchModuleRequest {
            identity: Some(identity.clone()),
            sha256: digest.to_owned(),
        })
        .await
        .map_err(|s| failed(status_message(&s)))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks
        .message()
        .await
        .map_err(|s| failed(status_message(&s)))?
    {
        let total = usize::try_from(chunk.total_size).unwrap_or(usize::MAX);
        if total > weft_api::MAX_MESSAGE_BYTES || bytes.len() + chunk.data.len() > total {
            return Err(failed(format!(
                "more bytes than the announced {} (at most {} allowed)",
                chunk.total_size,
                weft_api::MAX_MESSAGE_BYTES
            )));
        }
        if bytes.is_empty() {
            bytes.reserve_exact(total);
        }
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes.into())
}

/// The control plane's endpoint. Its client certificate is the configured one or, without
/// one, the workload certificate `mesh` holds (none yet: only `Certify` works).
pub(crate) fn endpoint(
    cp: &ControlPlaneConfig,
    mesh: Option<&MeshTls>,
) -> Result<Endpoint, String> {
    let mut endpoint = Endpoint::from_shared(cp.address.clone())
        .map_err(|e| format!("invalid control plane address {:?}: {e}", cp.address))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if let Some(tls) = &cp.tls {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
        match (&tls.client_cert, mesh.and_then(MeshTls::current)) {
            (Some((cert, key)), _) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, Some(workload)) => {
                config =
                    config.identity(Identity::from_pem(workload.chain_pem(), workload.key_pem()));
            }
            (None, None) => {}
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("invalid TLS settings: {}", error_chain(&e)))?;
    }
    Ok(endpoint)
}

/// Apply one snapshot and say how it went.
fn apply(reloader: &Reloader, state_dir: &Path, snapshot: Snapshot, modules: Fetched) -> Report {
    let version = snapshot.version;
    let store = Store::new(state_dir);
    let mut state = reloader.lock();
    let nack = |errors: Vec<FilterError>, serving: u64| {
        reloader
            .metrics()
            .config_update("control_plane", "rejected");
        tracing::error!(version, errors = ?errors.iter().map(|e| format!("{}: {}", e.filter, e.message)).collect::<Vec<_>>(),
            "control plane snapshot rejected; still serving the previous chain");
        Report {
            version,
            accepted: false,
            errors,
            serving_version: serving,
        }
    };
    let serving = reloader.snapshot_version();

    // Unchanged filters (a reconnect, or a change for other proxies): nothing to rebuild.
    let unchanged = state
        .served
        .as_ref()
        .is_some_and(|s| s.filters == snapshot.filters);
    if !unchanged {
        let mut fresh = modules.local;
        let mut problems = modules.errors;
        for (digest, bytes) in modules.bytes {
            match verify(&digest, &bytes) {
                Ok(()) => {
                    if let Err(e) = store.save_module(&digest, &bytes) {
                        tracing::warn!(error = %e, "cannot keep a module on disk; a restart without the control plane will not find it");
                    }
                    fresh.insert(digest, bytes);
                }
                Err(message) => {
                    problems.insert(digest, message);
                }
            }
        }
        let errors: Vec<FilterError> = snapshot
            .filters
            .iter()
            .filter_map(|f| {
                Some(FilterError {
                    filter: f.name.clone(),
                    message: problems.get(&f.module_sha256)?.clone(),
                })
            })
            .collect();
        if !errors.is_empty() {
            return nack(errors, serving);
        }
        let mut used = Used::default();
        let dynamic = match prepare(&mut state.builder, &store, &fresh, &snapshot, &mut used) {
            Ok(d) => d,
            Err(errors) => return nack(errors, serving),
        };
        if let Err(e) = reloader.apply(&mut state, dynamic, used) {
            return nack(
                vec![FilterError {
                    filter: String::new(),
                    message: e.to_string(),
                }],
                serving,
            );
        }
    }
    let kept = Snapshot {
        version,
        filters: snapshot.filters,
    };
    if let Err(e) = store.save_snapshot(&kept) {
        tracing::warn!(file = %store.snapshot_path().display(), error = %e,
            "cannot keep the snapshot on disk; a restart without the control plane will not serve it");
    }
    state.served = Some(kept);
    reloader.set_snapshot_version(version);
    reloader.metrics().config_update("control_plane", "applied");
    if !unchanged {
        tracing::info!(version, "control plane snapshot applied");
    }
    Report {
        version,
        accepted: true,
        errors: Vec::new(),
        serving_version: version,
    }
}

/// Check a module's bytes against the digest that names it.
fn verify(digest: &str, bytes: &[u8]) -> Result<(), String> {
    let actual = cache::digest(bytes);
    if actual != digest {
        return Err(format!(
            "module sha256 mismatch: the snapshot names {digest} but the bytes received hash to {actual}; not compiled"
        ));
    }
    Ok(())
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compile and configure every filter of a snapshot; all errors, one per filter.
fn prepare(
    builder: &mut Builder,
    store: &Store,
    fresh: &HashMap<String, Bytes>,
    snapshot: &Snapshot,
    used: &mut Used,
) -> Result<Vec<DynamicFilter>, Vec<FilterError>> {
    let mut dynamic = Vec::with_capacity(snapshot.filters.len());
    let mut errors = Vec::new();
    for (i, f) in snapshot.filters.iter().enumerate() {
        let result = if snapshot.filters[..i].iter().any(|g| g.name == f.name) {
            Err(format!("the snapshot has two filters named {:?}", f.name))
        } else {
            prepare_one(builder, store, fresh, f, used)
        };
        match result {
            Ok(d) => dynamic.push(d),
            Err(message) => errors.push(FilterError {
                filter: f.name.clone(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(dynamic)
    } else {
        Err(errors)
    }
}

fn prepare_one(
    builder: &mut Builder,
    store: &Store,
    fresh: &HashMap<String, Bytes>,
    f: &pb::Filter,
    used: &mut Used,
) -> Result<DynamicFilter, String> {
    let digest = &f.module_sha256;
    if !is_digest(digest) {
        return Err(format!(
            "module digest {digest:?} is not a sha256 digest (64 lowercase hex digits)"
        ));
    }
    let label = PathBuf::from(format!("sha256:{digest}"));
    let module = match builder.cached_module(digest) {
        Some(m) => m,
        None => {
            let bytes = match fresh.get(digest) {
                Some(b) => b.to_vec(),
                None => store.load_module(digest)?,
            };
            builder
                .module_from_bytes(digest, &bytes, &label)
                .map_err(|e| e.to_string())?
        }
    };
    let config: serde_json::Value = if f.config_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&f.config_json).map_err(|e| format!("config_json is not JSON: {e}"))?
    };
    let m = f.r#match.clone().unwrap_or_default();
    let direction = match m.direction.as_str() {
        "" => None,
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        other => {
            return Err(format!(
                "match.direction {other:?}: expected inbound, outbound or empty"
            ));
        }
    };
    if let Some(p) = m.path_prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(format!(
            "match.path_prefixes: {p:?} does not start with '/'"
        ));
    }
    let methods = m
        .methods
        .iter()
        .map(|name| {
            http::Method::from_bytes(name.as_bytes())
                .map_err(|_| format!("match.methods: {name:?} is not an HTTP method"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let when = (!m.path_prefixes.is_empty() || !methods.is_empty()).then(|| {
        Arc::new(RequestMatch {
            path_prefixes: m.path_prefixes.clone(),
            methods,
        })
    });
    let failure_policy = match pb::FailurePolicy::try_from(f.failure_policy) {
        Ok(pb::FailurePolicy::FailClosed) => FailurePolicy::FailClosed,
        Ok(pb::FailurePolicy::FailOpen) => FailurePolicy::FailOpen,
        Err(_) => return Err(format!("unknown failure policy {}", f.failure_policy)),
    };
    let time_budget = match f.time_budget_ms {
        0 => filter_limits::DEFAULT_TIME_BUDGET,
        ms if Duration::from_millis(ms.into()) <= filter_limits::MAX_TIME_BUDGET => {
            Duration::from_millis(ms.into())
        }
        ms => return Err(format!("time budget {ms}ms is more than 10s")),
    };
    let max_memory = match f.max_memory_bytes {
        0 => filter_limits::DEFAULT_MAX_MEMORY,
        n if filter_limits::MAX_MEMORY_RANGE.contains(&n) => n,
        n => {
            return Err(format!(
                "memory limit {n} bytes is not between 1MiB and 4GiB"
            ));
        }
    };
    builder
        .dynamic(
            FilterSpec {
                name: &f.name,
                module,
                config: &config,
                failure_policy,
                isolation: Isolation::Pooled,
                time_budget,
                max_memory_bytes: usize::try_from(max_memory).unwrap_or(usize::MAX),
            },
            direction,
            m.routes,
            when,
            used,
        )
        .map_err(|e| e.to_string())
}

fn status_message(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
