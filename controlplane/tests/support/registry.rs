//! Test support shared by `controlplane/tests/fetch.rs` and the Kubernetes end-to-end tests
//! (`tests/tests/e2e/kubernetes.rs`, which include this file by path): a test CA, and a real
//! OCI registry (Debian's `docker-registry`) on 127.0.0.1, over HTTP or TLS, with or without
//! htpasswd users.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Installs rustls's ring provider for the process (reqwest is built without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---- Certificates ----------------------------------------------------------------------------

#[path = "certs.rs"]
mod certs;
pub use certs::{Ca, new_ca, server_cert};

// ---- The registry ----------------------------------------------------------------------------

/// `docker-registry` (Docker distribution 2.8, as Debian packages it): on the PATH, or installed
/// with apt-get, once per test binary.
pub fn registry_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = find_on_path("docker-registry") {
            return path;
        }
        let install = || {
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "docker-registry",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|status| status.success())
        };
        let installed = install()
            || (Command::new("apt-get")
                .arg("update")
                .status()
                .is_ok_and(|s| s.success())
                && install());
        match find_on_path("docker-registry") {
            Some(path) if installed => path,
            _ => panic!(
                "these tests need a Docker distribution registry, and `docker-registry` is not \
                 installed and apt-get could not install it; install it with `apt-get update && \
                 apt-get install -y --no-install-recommends docker-registry` (Debian/Ubuntu, as \
                 root)"
            ),
        }
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How a test registry serves.
#[derive(Default)]
pub struct RegistrySetup<'a> {
    /// The CA of the certificate to serve HTTPS with; plain HTTP without.
    pub tls: Option<&'a Ca>,
    /// htpasswd users; anonymous access without.
    pub users: Vec<(&'static str, &'static str)>,
}

/// A registry process on 127.0.0.1, killed on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`, as references and `insecure_registries` name it.
    pub host: String,
    child: Child,
    dir: TempDir,
}

impl Registry {
    pub async fn start(setup: RegistrySetup<'_>) -> Self {
        // One start at a time within this binary: a port picked by binding port 0 is free only
        // until someone else binds it, and two of our registries must not race for one.
        static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _starting = STARTING.lock().await;
        install_crypto_provider();
        let binary = registry_binary();
        let dir = tempfile::tempdir().unwrap();
        // Lines under `http:`, and top-level sections, added to the generated config.
        let mut http_tls = String::new();
        let mut auth = String::new();
        if let Some(ca) = setup.tls {
            let (cert, key) = server_cert(ca);
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            http_tls = format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\n",
                dir.path().display()
            );
        }
        if !setup.users.is_empty() {
            let htpasswd: String = setup
                .users
                .iter()
                .map(|(user, password)| {
                    // Cost 4, the lowest: these passwords guard nothing.
                    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
                })
                .collect();
            std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: weft-test\n    path: {}/htpasswd\n",
                dir.path().display()
            );
        }
        let probe = {
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(2));
            if let Some(ca) = setup.tls {
                builder = builder.tls_certs_merge(
                    reqwest::Certificate::from_pem_bundle(ca.pem.as_bytes()).unwrap(),
                );
            }
            builder.build().unwrap()
        };
        let scheme = if setup.tls.is_some() { "https" } else { "http" };

        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let host = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: \
                 {dir}/data\nhttp:\n  addr: {host}\n{http_tls}{auth}",
                dir = dir.path().display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));

            let deadline = Instant::now() + Duration::from_secs(20);
            let url = format!("{scheme}://{host}/v2/");
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    if log.contains("address already in use") {
                        break; // Someone took the port: pick another.
                    }
                    panic!("the registry exited ({status}) before serving; its log:\n{log}");
                }
                // Any answer will do (401 with htpasswd): the registry is serving.
                if probe.get(&url).send().await.is_ok() {
                    return Self { host, child, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    panic!("the registry did not answer {url} within 20s; its log:\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("could not find a free port for the registry in 5 attempts");
    }

    /// The registry's log, for messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
