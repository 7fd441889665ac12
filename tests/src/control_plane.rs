//! A real control plane in-process: the gRPC distribution server on `127.0.0.1:0`, fed by the
//! directory source watching a temporary directory (or by [`ControlPlane::publish`] directly),
//! plus test certificates for mTLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tempfile::TempDir;
use tokio::net::TcpListener;
use weft_controlplane::identity::Issuer;
use weft_controlplane::server::{self, ServerHandle};
use weft_controlplane::source::dir::DirSource;
use weft_controlplane::source::kubernetes::{KubernetesOptions, KubernetesSource};
use weft_controlplane::tls::TlsConfig;
use weft_controlplane::{ControlPlane, DEFAULT_ROOT_NAMESPACE, ProxyStatus};

/// A control plane serving a temporary definitions directory.
pub struct TestControlPlane {
    /// The control plane's state: status of proxies, the catalog.
    pub control_plane: ControlPlane,
    server: Option<ServerHandle>,
    source: Option<DirSource>,
    kubernetes: Option<KubernetesSource>,
    dir: TempDir,
}

impl std::fmt::Debug for TestControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestControlPlane")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestControlPlane {
    /// Starts the server on `127.0.0.1:0` and the directory source on an empty directory.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_at("127.0.0.1:0".parse()?, None, true).await
    }

    /// Starts the server on `address` (a fixed port, to restart on the same one), with TLS
    /// if given, and with or without the directory source.
    pub async fn start_at(
        address: SocketAddr,
        tls: Option<&TlsConfig>,
        watch_dir: bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::start_with_dir(address, tls, watch_dir.then_some(dir)).await
    }

    /// Starts on `address` serving the definitions already in `dir` (none: no source).
    pub async fn start_with_dir(
        address: SocketAddr,
        tls: Option<&TlsConfig>,
        dir: Option<TempDir>,
    ) -> anyhow::Result<Self> {
        Self::start_full(address, tls, dir, None).await
    }

    /// Starts on `address` without a definitions source, issuing workload certificates
    /// from `identity` (none: `Certify` answers `FAILED_PRECONDITION`).
    pub async fn start_with_identity(
        address: SocketAddr,
        tls: Option<&TlsConfig>,
        identity: Option<Arc<Issuer>>,
    ) -> anyhow::Result<Self> {
        Self::start_full(address, tls, None, identity).await
    }

    async fn start_full(
        address: SocketAddr,
        tls: Option<&TlsConfig>,
        dir: Option<TempDir>,
        identity: Option<Arc<Issuer>>,
    ) -> anyhow::Result<Self> {
        let control_plane = ControlPlane::new(DEFAULT_ROOT_NAMESPACE);
        let (source, dir) = match dir {
            Some(dir) => (
                Some(
                    DirSource::start(dir.path(), control_plane.clone())
                        .context("starting the directory source")?,
                ),
                dir,
            ),
            None => (None, tempfile::tempdir()?),
        };
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the control plane to {address}"))?;
        let server = server::serve(&control_plane, listener, tls, identity)
            .await
            .context("starting the control plane server")?;
        Ok(Self {
            control_plane,
            server: Some(server),
            source,
            kubernetes: None,
            dir,
        })
    }

    /// Starts the server on `127.0.0.1:0` (TLS if given) fed by the Kubernetes source
    /// watching `api` (a [`FakeApiServer`](crate::kube_fake::FakeApiServer)'s client, or a
    /// real cluster's): `WasmFilter`s, and `Service`s with their `EndpointSlice`s.
    pub async fn start_kubernetes(
        client: kube::Client,
        tls: Option<&TlsConfig>,
    ) -> anyhow::Result<Self> {
        let mut cp = Self::start_with_dir("127.0.0.1:0".parse()?, tls, None).await?;
        let options = KubernetesOptions {
            retry: Duration::from_millis(200),
            status_delay: Duration::from_millis(20),
            ..KubernetesOptions::default()
        };
        cp.kubernetes = Some(
            KubernetesSource::start(client, cp.control_plane.clone(), options)
                .context("starting the Kubernetes source")?,
        );
        Ok(cp)
    }

    /// Waits (up to `limit`) until the services catalog has a version above `after`;
    /// returns it.
    pub async fn wait_for_services_version(
        &self,
        after: u64,
        limit: Duration,
    ) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let version = self.control_plane.services_version();
            if version > after {
                return Ok(version);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("services version still {version} after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `done` holds of the control plane (what a source published shows in it).
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&ControlPlane) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.control_plane) {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{what}: not within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Where proxies connect.
    pub fn addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .expect("the server runs until shutdown")
            .local_addr()
    }

    /// The definitions directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Errors the directory source found, as `file: message` lines.
    pub fn source_errors(&self) -> Vec<String> {
        self.source
            .as_ref()
            .map(|s| {
                s.errors()
                    .into_iter()
                    .map(|e| format!("{}: {}", e.file, e.message))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes `contents` to `file` in the definitions directory, atomically (a rename).
    pub fn write(&self, file: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
        let path = self.dir.path().join(file);
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Copies the module at `from` into the definitions directory as `file`.
    pub fn copy_module(&self, from: &str, file: &str) -> anyhow::Result<()> {
        let bytes = std::fs::read(from).with_context(|| format!("reading {from}"))?;
        self.write(file, bytes)
    }

    /// The status of proxy `name` (any namespace), if it ever subscribed.
    pub fn proxy(&self, name: &str) -> Option<ProxyStatus> {
        self.control_plane
            .proxies()
            .into_iter()
            .find(|p| p.identity.name == name)
    }

    /// Waits (up to `limit`) until proxy `name`'s status satisfies `check`; returns it.
    pub async fn wait_for_proxy(
        &self,
        name: &str,
        limit: Duration,
        mut check: impl FnMut(&ProxyStatus) -> bool,
    ) -> anyhow::Result<ProxyStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.proxy(name)
                && check(&status)
            {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "proxy {name:?} did not reach the expected state within {limit:?}; last status: {:#?}",
                    self.proxy(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the gRPC server (the control plane "crashes"); the directory stays.
    pub async fn stop(&mut self) {
        self.source = None;
        self.kubernetes = None;
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Hands over the definitions directory (to start another control plane on it).
    pub fn into_dir(mut self) -> TempDir {
        self.source = None;
        let _ = self.server.take();
        std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("a temporary directory"),
        )
    }
}

/// A `WasmFilter` definition file for the directory source.
pub fn definition(name: &str, module_file: &str, selector: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: WasmFilter\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  module:\n    file: {module_file}\n  selector:\n    matchLabels: {selector}\n{spec_extra}"
    )
}

/// The `control_plane:` section of a proxy config.
pub fn proxy_section(
    address: &str,
    name: &str,
    labels: &str,
    state_dir: &Path,
    tls: Option<&ClientCerts>,
) -> String {
    let tls = match tls {
        Some(c) => format!(
            "\n  tls: {{ ca: {:?}, cert: {:?}, key: {:?} }}",
            c.ca, c.cert, c.key
        ),
        None => String::new(),
    };
    format!(
        "control_plane:\n  address: {address}\n  name: {name}\n  namespace: default\n  labels: {labels}\n  state_dir: {:?}{tls}\n",
        state_dir
    )
}

/// PEM files a proxy uses for mTLS.
#[derive(Debug, Clone)]
pub struct ClientCerts {
    /// The CA that signed the control plane's certificate.
    pub ca: PathBuf,
    /// The proxy's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// A test certificate authority, writing PEM files into a temporary directory.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    dir: TempDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem();
        let issuer = rcgen::Issuer::new(params, key);
        Ok(Self {
            issuer,
            ca_pem,
            dir: tempfile::tempdir()?,
        })
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }

    /// A leaf certificate for `sans` (DNS names or IP addresses), written as `<file>.pem`
    /// and `<file>-key.pem`; returns (cert, key).
    pub fn leaf(&self, file: &str, sans: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let params = rcgen::CertificateParams::new(
            sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )?;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}-key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    /// The control plane's server files: a certificate for `127.0.0.1` and `localhost`, and
    /// this CA as the client CA.
    pub fn server_tls(&self) -> anyhow::Result<TlsConfig> {
        let (cert, key) = self.leaf("server", &["127.0.0.1", "localhost"])?;
        Ok(TlsConfig {
            cert,
            key,
            client_ca: Some(self.ca_file()?),
        })
    }

    /// A proxy's client files: a certificate with DNS name `<name>.<namespace>` from this CA,
    /// trusting `server_ca` for the control plane.
    pub fn client(
        &self,
        name: &str,
        namespace: &str,
        server_ca: &TestCa,
    ) -> anyhow::Result<ClientCerts> {
        let (cert, key) =
            self.leaf(&format!("client-{name}"), &[&format!("{name}.{namespace}")])?;
        Ok(ClientCerts {
            ca: server_ca.ca_file()?,
            cert,
            key,
        })
    }
}

/// A catalog entry from definition YAML (as [`definition`] writes it), for tests that publish
/// catalogs directly; the module is named by `sha256`.
pub fn catalog_filter(
    yaml: &str,
    sha256: &str,
    generation: i64,
) -> anyhow::Result<weft_controlplane::CatalogFilter> {
    let parsed = weft_controlplane::definition::parse_file(yaml, Path::new("test.yaml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(weft_controlplane::CatalogFilter {
        namespace: parsed.object.metadata.namespace.clone(),
        name: parsed.object.metadata.name.clone(),
        generation,
        settings: parsed.settings,
        module_sha256: sha256.to_owned(),
    })
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
