//! The proxy's lifecycle: load a config (compile modules, configure filters, build routes),
//! bind the listeners and the admin endpoint, serve, reload, and shut down with a drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use arc_swap::ArcSwap;

use weft_runtime::LoadError;

use crate::build::{Builder, Used};
use crate::config::{Config, ConfigError, InboundTls};
use crate::discovery::Registry;
use crate::identity::Identity;
use crate::mesh::{Handshakes, Inbound};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::route::ListenerState;
use crate::server::CloseReason;
use crate::{admin, control, identity, reload, server};
use weft_identity::tls::MeshTls;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A filter could not be loaded or configured.
    #[error("listener \"{listener}\", filter \"{filter}\" (module {}): {source}", module.display())]
    Filter {
        /// The listener the filter belongs to.
        listener: String,
        /// The filter's name.
        filter: String,
        /// Its module path.
        module: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<LoadError>,
    },
    /// The wasm runtime could not start.
    #[error(transparent)]
    Runtime(LoadError),
    /// The TLS library refused its configuration (a build problem, not the config's).
    #[error("cannot set up mTLS: {0}")]
    Tls(String),
    /// A listener or the admin endpoint could not bind its address.
    #[error("{what}: cannot listen on {address}: {source}")]
    Bind {
        /// `listener "name"` or `admin`.
        what: String,
        /// The address from the config.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Entry point of the data plane.
#[derive(Debug)]
pub struct Proxy;

/// Everything a config loads, ready to serve but not yet bound.
#[derive(Debug)]
pub struct Loaded {
    listeners: Vec<(Arc<ListenerState>, SocketAddr)>,
    admin: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    /// The workload identity, when the config asks for one.
    identity: Option<Identity>,
    /// Services discovered from the control plane, when there is one.
    services: Option<Arc<Registry>>,
}

impl Loaded {
    /// How many filters (listener filters, route overrides and control plane filters) were
    /// configured.
    pub fn filter_count(&self) -> usize {
        self.listeners
            .iter()
            .map(|(l, _)| l.table.load().filters)
            .sum()
    }

    /// How many listeners the config declares.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }
}

impl Proxy {
    /// Compile every module and configure every filter of `config`, without binding anything.
    /// This is what `weft-proxy check` runs.
    pub fn load(config: &Config) -> Result<Loaded, Error> {
        Self::load_with(config, false)
    }

    /// [`Proxy::load`], plus with `restore` the control plane filters of the last good
    /// snapshot kept on disk, if any.
    fn load_with(config: &Config, restore: bool) -> Result<Loaded, Error> {
        let metrics = Arc::new(Metrics::new());
        let mesh = Arc::new(MeshTls::new().map_err(Error::Tls)?);
        let inbound_handshakes = Handshakes::new(&metrics, "inbound");
        let mut builder = Builder::new(config, metrics.clone(), mesh.clone())?;
        let mut used = Used::default();
        let restored = match &config.control_plane {
            Some(cp) if restore => control::restore(cp, &mut builder, &mut used),
            _ => None,
        };
        let dynamic = restored.as_ref().map_or(&[][..], |(d, _)| d.as_slice());
        let tables = builder.tables(config, dynamic, &mut used)?;
        builder.commit(used);
        let services = config
            .control_plane
            .as_ref()
            .zip(config.discovery.as_ref())
            .map(|(cp, discovery)| {
                Arc::new(Registry::new(
                    cp.namespace.clone(),
                    discovery.clone(),
                    mesh.clone(),
                    Handshakes::new(&metrics, "outbound"),
                    metrics.clone(),
                ))
            });
        let listeners: Vec<_> = config
            .listeners
            .iter()
            .zip(tables)
            .map(|(l, table)| {
                let state = ListenerState {
                    name: l.name.as_str().into(),
                    direction: l.direction,
                    limits: config.limits.clone(),
                    paths: l.paths,
                    inbound_tls: (l.tls != InboundTls::Disabled)
                        .then(|| Inbound::new(l.tls, &mesh, inbound_handshakes.clone())),
                    peer_identity_header: l.peer_identity_header.clone(),
                    unmatched: metrics.route(&l.name, "none", "none"),
                    connections: metrics.connections(&l.name, &CloseReason::LABELS),
                    table: ArcSwap::from_pointee(table),
                    services: services.clone(),
                };
                (Arc::new(state), l.address)
            })
            .collect();
        let reloader = Arc::new(Reloader::new(
            builder,
            config.clone(),
            restored,
            listeners.iter().map(|(l, _)| l.clone()).collect(),
            metrics.clone(),
        ));
        Ok(Loaded {
            listeners,
            admin: config.admin.as_ref().map(|a| a.address),
            metrics,
            reloader,
            identity: config.identity.as_ref().map(|_| Identity::new(mesh)),
            services,
        })
    }

    /// Load `config`, bind its listeners and admin endpoint, and serve until shut down.
    ///
    /// With a control plane configured, the proxy starts with the last good snapshot kept on
    /// disk (if any) and subscribes in the background: it is ready at once, whether or not
    /// the control plane answers.
    pub async fn start(config: Config) -> Result<RunningProxy, Error> {
        // Compiling modules is CPU work; keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || Proxy::load_with(&config, true))
            .await
            .map_err(|e| Error::Runtime(LoadError::Engine(format!("loader panicked: {e}"))))??;
        Self::serve(loaded).await
    }

    /// Bind and serve what [`Proxy::load`] prepared.
    pub async fn serve(loaded: Loaded) -> Result<RunningProxy, Error> {
        let (shutdown, _) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for (state, address) in loaded.listeners {
            let listener = bind(address).map_err(|source| Error::Bind {
                what: format!("listener \"{}\"", state.name),
                address,
                source,
            })?;
            let local = listener.local_addr().map_err(|source| Error::Bind {
                what: format!("listener \"{}\"", state.name),
                address,
                source,
            })?;
            tracing::info!(listener = &*state.name, address = %local, "listening");
            addrs.push((state.name.to_string(), local));
            tasks.spawn(server::accept_loop(listener, state, shutdown.subscribe()));
        }
        let admin = match loaded.admin {
            Some(address) => {
                let listener = bind(address).map_err(|source| Error::Bind {
                    what: "admin".into(),
                    address,
                    source,
                })?;
                let local = listener.local_addr().map_err(|source| Error::Bind {
                    what: "admin".into(),
                    address,
                    source,
                })?;
                tracing::info!(address = %local, "admin endpoint listening");
                tasks.spawn(admin::serve(
                    listener,
                    loaded.metrics.clone(),
                    ready.clone(),
                    shutdown.subscribe(),
                ));
                Some(local)
            }
            None => None,
        };
        reload::watch_file(&loaded.reloader, &mut tasks, shutdown.subscribe());
        let workload = loaded.reloader.identity();
        if let (Some(identity), Some(cp), Some(config)) =
            (&loaded.identity, loaded.reloader.control_plane(), workload)
        {
            tasks.spawn(identity::run(
                identity.clone(),
                cp,
                config,
                loaded.metrics.clone(),
                shutdown.subscribe(),
            ));
        }
        if let Some(cp) = loaded.reloader.control_plane() {
            tasks.spawn(control::run(
                loaded.reloader.clone(),
                cp,
                loaded.services.clone(),
                loaded.identity.clone(),
                shutdown.subscribe(),
            ));
        }
        match loaded.identity {
            // Not ready (/ready answers 503) until the workload certificate is installed:
            // mTLS listeners and upstreams cannot work without it.
            Some(identity) => {
                let ready = ready.clone();
                let mut shutdown = shutdown.subscribe();
                tasks.spawn(async move {
                    tokio::select! {
                        () = identity.installed() => ready.store(true, Ordering::Release),
                        _ = shutdown.changed() => {}
                    }
                });
            }
            None => ready.store(true, Ordering::Release),
        }
        Ok(RunningProxy {
            listeners: addrs,
            admin,
            shutdown,
            tasks,
            metrics: loaded.metrics,
            reloader: loaded.reloader,
        })
    }
}

/// How many connections may wait to be accepted. The OS default of 128 drops SYNs under a
/// burst of new connections (each then waits a full second for the client's retransmit).
const LISTEN_BACKLOG: u32 = 1024;

/// Bind a listening socket with [`LISTEN_BACKLOG`].
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do on Unix: a restarted proxy can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A proxy that is serving.
#[derive(Debug)]
pub struct RunningProxy {
    listeners: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
}

impl RunningProxy {
    /// Re-read the config file now and apply it as a file change would: on success new
    /// requests use the new chains; on failure the error is returned and nothing changes.
    pub async fn reload(&self) -> Result<(), Error> {
        let reloader = self.reloader.clone();
        tokio::task::spawn_blocking(move || reloader.reload_file())
            .await
            .map_err(|e| Error::Runtime(LoadError::Engine(format!("reload panicked: {e}"))))?
    }

    /// The control plane snapshot version being served; 0 when none.
    pub fn snapshot_version(&self) -> u64 {
        self.reloader.snapshot_version()
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// The bound address of the admin endpoint.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stop accepting, let in-flight requests finish (up to a deadline), and return.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
