//! Starting the proxy from a YAML string, the way an operator would: the YAML goes into a file
//! that `Config::load` reads, so config errors name a real file, line and column.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tempfile::TempDir;
use weft_proxy::config::Config;
use weft_proxy::{Proxy, RunningProxy};

/// The name of the config file the helpers write (errors name it).
pub const CONFIG_FILE: &str = "weft.yaml";

/// A running proxy plus the temporary directory holding its config file.
///
/// Dereferences to [`RunningProxy`]. Dropping it drops the proxy without a graceful shutdown;
/// call [`TestProxy::shutdown`] to test that.
pub struct TestProxy {
    running: Option<RunningProxy>,
    config_path: PathBuf,
    _dir: TempDir,
}

impl std::fmt::Debug for TestProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProxy")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl TestProxy {
    /// The address of listener `name`. Panics when there is no such listener: the test's
    /// config and its requests disagree.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listener_addr(name)
            .unwrap_or_else(|| panic!("the proxy has no listener named {name:?}"))
    }

    /// The address of the listener named `inbound`, the one most tests use.
    pub fn addr(&self) -> SocketAddr {
        self.listener("inbound")
    }

    /// The admin address (`/metrics`, `/ready`). Panics when the config has no `admin` section.
    pub fn admin(&self) -> SocketAddr {
        self.admin_addr()
            .expect("the proxy has no admin address: add `admin: { address: 127.0.0.1:0 }`")
    }

    /// The config file the proxy was started from.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Shuts the proxy down gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

impl Deref for TestProxy {
    type Target = RunningProxy;

    fn deref(&self) -> &RunningProxy {
        self.running
            .as_ref()
            .expect("a TestProxy holds its proxy until shutdown consumes it")
    }
}

/// Writes `yaml` to a config file, loads it and starts the proxy.
pub async fn start_proxy(yaml: &str) -> anyhow::Result<TestProxy> {
    let (dir, config_path) = write_config(yaml)?;
    let config = Config::load(&config_path)
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
        .with_context(|| format!("loading the config:\n{yaml}"))?;
    let running = Proxy::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
        .context("starting the proxy")?;
    Ok(TestProxy {
        running: Some(running),
        config_path,
        _dir: dir,
    })
}

/// The error message of a config that [`Config::load`] must reject (written to a file named
/// [`CONFIG_FILE`]). Panics if the config loads.
pub fn proxy_config_error(yaml: &str) -> String {
    let (_dir, path) = write_config(yaml).expect("writing the config file");
    match Config::load(&path) {
        Ok(_) => panic!("the proxy accepted a config it must reject:\n{yaml}"),
        Err(e) => error_chain(&e),
    }
}

/// The error message of a config that loads but with which [`Proxy::start`] must fail (a bad
/// module, a rejected filter config). Panics if the config does not load, or the proxy starts.
pub async fn proxy_start_error(yaml: &str) -> String {
    let (_dir, path) = write_config(yaml).expect("writing the config file");
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => panic!(
            "expected the config to load and Proxy::start to fail, but loading failed: {}",
            error_chain(&e)
        ),
    };
    match Proxy::start(config).await {
        Ok(running) => {
            running.shutdown().await;
            panic!("the proxy started with a config it must refuse:\n{yaml}")
        }
        Err(e) => error_chain(&e),
    }
}

/// The error that stops the proxy from starting with `yaml`, whether [`Config::load`] or
/// [`Proxy::start`] reports it: for failures a user only cares are caught before serving.
/// Panics if the proxy starts.
pub async fn startup_error(yaml: &str) -> String {
    let (_dir, path) = write_config(yaml).expect("writing the config file");
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => return error_chain(&e),
    };
    match Proxy::start(config).await {
        Ok(running) => {
            running.shutdown().await;
            panic!("the proxy started with a config it must refuse:\n{yaml}")
        }
        Err(e) => error_chain(&e),
    }
}

fn write_config(yaml: &str) -> anyhow::Result<(TempDir, PathBuf)> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir.path().join(CONFIG_FILE);
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    Ok((dir, path))
}

/// `error` and its sources, joined by `: `, so assertions see the whole story.
pub use weft_runtime::error_chain;

/// A proxy serving on a thread of its own with a current-thread runtime: what
/// `weft-proxy --workers 1` runs, so a test can load it from other threads and see what one
/// worker does under that load.
pub struct SingleThreadProxy {
    listeners: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl std::fmt::Debug for SingleThreadProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleThreadProxy")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl SingleThreadProxy {
    /// Writes `yaml` to a config file and starts the proxy on a new thread; returns once it
    /// serves.
    pub fn start(yaml: &str) -> anyhow::Result<Self> {
        let (dir, config_path) = write_config(yaml)?;
        let config = Config::load(&config_path)
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
            .with_context(|| format!("loading the config:\n{yaml}"))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weft-proxy-worker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Proxy::start(config).await {
                        Ok(running) => {
                            let addrs = (
                                ["inbound", "outbound"]
                                    .iter()
                                    .filter_map(|n| {
                                        running.listener_addr(n).map(|a| (n.to_string(), a))
                                    })
                                    .collect::<Vec<_>>(),
                                running.admin_addr(),
                            );
                            let _ = ready_tx.send(Ok(addrs));
                            let _ = stopped.await;
                            running.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("{}", error_chain(&e))));
                        }
                    }
                });
            })?;
        let (listeners, admin) = ready_rx
            .recv()
            .context("the proxy thread ended before serving")??;
        Ok(Self {
            listeners,
            admin,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The address of the listener named `inbound`.
    pub fn addr(&self) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == "inbound")
            .map(|(_, a)| *a)
            .expect("the proxy has a listener named inbound")
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
            .expect("the proxy has no admin address: add `admin: { address: 127.0.0.1:0 }`")
    }
}

impl Drop for SingleThreadProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether this is the parent of a test that runs alone, in a child process of this test
/// binary with the variables `env` set: for tests that measure the whole process (resident
/// memory) or need environment variables other tests must not see.
///
/// When the first of `env`'s variables is unset this is the parent: it runs the test named
/// `test` (its path in the test binary, e.g. `runtime::some_test`) in the child, panics with
/// the child's output unless it passed, and returns true, and the test returns. In the child
/// it returns false and the test does its work.
pub fn ran_alone_in_child(test: &str, env: &[(&str, &str)]) -> bool {
    if env
        .first()
        .is_some_and(|(name, _)| std::env::var_os(name).is_some())
    {
        return false;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .expect("run the test in a child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}
