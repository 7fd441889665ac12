//! `weft-controlplane`: serves filter definitions to proxies over gRPC, from a directory or
//! from `WasmFilter` resources in Kubernetes; also prints the CRD and pushes modules to OCI
//! registries.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use weft_controlplane::fetch::FetchOptions;
use weft_controlplane::identity::{
    BootstrapTokens, DEFAULT_TOKEN_AUDIENCE, Issuer, Reviewer, TokenReviewer,
};
use weft_controlplane::source::dir::DirSource;
use weft_controlplane::source::kubernetes::{KubernetesOptions, KubernetesSource};
use weft_controlplane::tls::TlsConfig;
use weft_controlplane::{ControlPlane, DEFAULT_ROOT_NAMESPACE, admin, server};
use weft_identity::authority::{ANCHOR_FILE, Authority, AuthoritySource};

/// weft's control plane: streams WasmFilter definitions to proxies.
#[derive(Debug, Parser)]
#[command(
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the WasmFilter CustomResourceDefinition (YAML), for `kubectl apply -f -`.
    Crd,
    /// Push a filter module to an OCI registry as a Wasm artifact (layer `application/wasm`).
    Push {
        /// The module (.wasm).
        module: PathBuf,
        /// Where to push, like `oci://registry.example.com/filters/authz:1.0`.
        reference: String,
        /// Registry user; the password is read from `WEFT_REGISTRY_PASSWORD`.
        #[arg(long)]
        username: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// How registries and HTTPS servers are reached.
#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// Registry `host:port` spoken to over plain HTTP (repeatable); for local registries.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) trusted for `https://` modules and registries.
    #[arg(long, value_name = "PEM")]
    ca_bundle: Option<PathBuf>,
}

impl RegistryArgs {
    fn fetch_options(&self) -> anyhow::Result<FetchOptions> {
        let extra_roots_pem = match &self.ca_bundle {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("cannot read --ca-bundle {}", path.display()))?,
            None => Vec::new(),
        };
        Ok(FetchOptions {
            extra_roots_pem,
            insecure_registries: self.insecure_registries.clone(),
            ..FetchOptions::default()
        })
    }
}

/// Serving proxies.
#[derive(Debug, clap::Args)]
struct Args {
    /// Where definitions come from: `dir=PATH`, a directory of WasmFilter YAML files, or
    /// `kubernetes`, WasmFilter resources (credentials from KUBECONFIG or the pod's service
    /// account).
    #[arg(long, value_name = "SOURCE", required = true)]
    source: Option<Source>,
    /// With `--source kubernetes`: watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// With `--source kubernetes`: how often `pullPolicy: Always` modules are fetched again.
    #[arg(long, default_value = "5m", value_parser = weft_yaml::parse_duration)]
    resync: Duration,
    /// With `--source kubernetes`: how long after start a filter's status keeps what an
    /// earlier run recorded while proxies resubscribe, rather than saying they have not yet.
    #[arg(long, default_value = "30s", value_parser = weft_yaml::parse_duration)]
    resubscribe_grace: Duration,
    #[command(flatten)]
    registry: RegistryArgs,
    /// gRPC address for proxies.
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// HTTP address for /proxies, /filters and /healthz.
    #[arg(long, default_value = "127.0.0.1:18001")]
    admin: SocketAddr,
    /// Filters in this namespace select proxies of every namespace.
    #[arg(long, default_value = DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// Server certificate (PEM); enables TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that signs proxy certificates; enables mTLS and identity checks.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    #[command(flatten)]
    identity: IdentityArgs,
}

/// Mesh identity: the control plane as the certificate authority that issues proxies their
/// workload certificates (the `Identity.Certify` RPC). Off unless an authority is given.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Mesh identity (off unless an authority is given)")]
struct IdentityArgs {
    /// Issue workload certificates from the certificate authority in DIR (`ca.pem`,
    /// `ca-key.pem`), generated and written there on first start. Keep DIR across restarts:
    /// a new trust anchor does not trust the certificates issued under the old one.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "identity_trust_anchors", "identity_issuer_cert", "identity_issuer_key",
    ])]
    identity_dir: Option<PathBuf>,
    /// Issue workload certificates from a mounted authority (e.g. a Kubernetes Secret): the
    /// trust anchors (one or more PEM certificates) that sidecars trust. Needs
    /// --identity-issuer-cert and --identity-issuer-key.
    #[arg(long, value_name = "PEM", requires_all = ["identity_issuer_cert", "identity_issuer_key"])]
    identity_trust_anchors: Option<PathBuf>,
    /// The issuer's certificate (PEM): one of the anchors, or an intermediate signed by one.
    #[arg(long, value_name = "PEM", requires_all = ["identity_trust_anchors", "identity_issuer_key"])]
    identity_issuer_cert: Option<PathBuf>,
    /// The issuer's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long, value_name = "PEM", requires_all = ["identity_trust_anchors", "identity_issuer_cert"])]
    identity_issuer_key: Option<PathBuf>,
    /// The trust domain of the SPIFFE IDs issued:
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    trust_domain: String,
    /// How long an issued certificate is valid (from 1s to 366d); proxies renew at about
    /// half of it.
    #[arg(long, default_value = "24h", value_parser = weft_yaml::parse_duration)]
    certificate_lifetime: Duration,
    /// With `--source dir=...`: the bootstrap token file, required with an authority. One
    /// line per token: `<token> <namespace>/<service-account>` (tokens of 16 or more
    /// characters; `#` comment lines and blank lines are ignored). A proxy presenting a token
    /// gets that identity only. The file is read again when it changes.
    #[arg(long, value_name = "FILE")]
    bootstrap_tokens: Option<PathBuf>,
    /// With `--source kubernetes`: the audience service-account tokens must be bound to
    /// (checked with TokenReview; proxies send a projected token with this audience).
    /// Default: `weft`.
    #[arg(long, value_name = "AUDIENCE")]
    token_audience: Option<String>,
}

impl IdentityArgs {
    /// Where the authority comes from, if identity is on.
    fn authority_source(&self) -> Option<AuthoritySource> {
        if let Some(dir) = &self.identity_dir {
            return Some(AuthoritySource::Directory(dir.clone()));
        }
        match (
            &self.identity_trust_anchors,
            &self.identity_issuer_cert,
            &self.identity_issuer_key,
        ) {
            (Some(anchors), Some(issuer_cert), Some(issuer_key)) => Some(AuthoritySource::Files {
                anchors: anchors.clone(),
                issuer_cert: issuer_cert.clone(),
                issuer_key: issuer_key.clone(),
            }),
            _ => None,
        }
    }

    /// Checks that the identity flags fit together and with `source`, before anything
    /// starts.
    fn check(&self, source: &Source) -> anyhow::Result<()> {
        if self.authority_source().is_none() {
            if self.bootstrap_tokens.is_some() || self.token_audience.is_some() {
                bail!(
                    "--bootstrap-tokens and --token-audience need a certificate authority: \
                     --identity-dir DIR, or --identity-trust-anchors, --identity-issuer-cert \
                     and --identity-issuer-key"
                );
            }
            return Ok(());
        }
        match source {
            Source::Dir(_) => {
                if self.token_audience.is_some() {
                    bail!(
                        "--token-audience is for --source kubernetes (service-account tokens); \
                         with --source dir=... proxies present bootstrap tokens"
                    );
                }
                if self.bootstrap_tokens.is_none() {
                    bail!(
                        "issuing identities with --source dir=... needs --bootstrap-tokens FILE: \
                         without a cluster to vouch for service accounts, a proxy proves its \
                         identity with a token from that file (lines \
                         `<token> <namespace>/<service-account>`)"
                    );
                }
            }
            Source::Kubernetes => {
                if self.bootstrap_tokens.is_some() {
                    bail!(
                        "--bootstrap-tokens is for --source dir=...; with --source kubernetes \
                         proxies prove their identity with service-account tokens (TokenReview)"
                    );
                }
                if self.token_audience.as_deref() == Some("") {
                    bail!("--token-audience must not be empty");
                }
            }
        }
        Ok(())
    }

    /// Loads the authority and the credential check; `None` when identity is off. `kube` is
    /// the Kubernetes source's client, `None` for the directory source. Call
    /// [`check`](Self::check) first.
    fn issuer(&self, kube: Option<&kube::Client>) -> anyhow::Result<Option<Arc<Issuer>>> {
        let Some(authority_source) = self.authority_source() else {
            return Ok(None);
        };
        let reviewer = match (kube, &self.bootstrap_tokens) {
            (None, Some(file)) => {
                let tokens = BootstrapTokens::load(file).map_err(anyhow::Error::msg)?;
                tracing::info!(
                    file = %file.display(),
                    tokens = tokens.len(),
                    "proxies prove their identity with bootstrap tokens"
                );
                Reviewer::Bootstrap(tokens)
            }
            (Some(client), _) => {
                let audience = self
                    .token_audience
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_AUDIENCE.to_owned());
                tracing::info!(
                    %audience,
                    "proxies prove their identity with service-account tokens (TokenReview)"
                );
                Reviewer::TokenReview(TokenReviewer::new(client.clone(), audience))
            }
            (None, None) => bail!("no credential check: --bootstrap-tokens is missing"),
        };
        let (authority, generated) = Authority::load(
            &authority_source,
            &self.trust_domain,
            self.certificate_lifetime,
        )
        .context("cannot start the certificate authority")?;
        if generated && let AuthoritySource::Directory(dir) = &authority_source {
            tracing::warn!(
                anchor = %dir.join(ANCHOR_FILE).display(),
                "generated a NEW mesh trust anchor in {}: sidecar certificates issued under \
                 an older anchor are NOT trusted by it (proxies get the new anchors when \
                 they next call Certify); keep this directory across restarts",
                dir.display()
            );
        }
        tracing::info!(
            trust_domain = %authority.trust_domain(),
            lifetime = %humantime::format_duration(self.certificate_lifetime),
            "issuing workload identities"
        );
        Ok(Some(Arc::new(Issuer::new(authority, reviewer))))
    }
}

/// A definition source named on the command line.
#[derive(Debug, Clone)]
enum Source {
    Dir(PathBuf),
    Kubernetes,
}

impl FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("dir=") {
            if path.is_empty() {
                return Err("`dir=` needs a path, like `dir=./filters`".to_owned());
            }
            return Ok(Self::Dir(PathBuf::from(path)));
        }
        if text == "kubernetes" {
            return Ok(Self::Kubernetes);
        }
        Err(format!(
            "unknown source {text:?}; expected `dir=PATH` (a directory of WasmFilter YAML files) \
             or `kubernetes` (WasmFilter resources)"
        ))
    }
}

fn main() -> ExitCode {
    weft_runtime::memory::return_freed_memory();
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        let mut out = std::io::stdout().lock();
        return match out.write_all(weft_controlplane::crd::crd_yaml().as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("weft-controlplane: cannot write the CRD: {e}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        // Plain text when piped: scripts and tests parse the "listening" lines.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weft-controlplane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Push {
            module,
            reference,
            username,
            registry,
        }) => runtime.block_on(push(module, reference, username, registry)),
        _ => runtime.block_on(run(cli.serve)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-controlplane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert,
            key,
            client_ca: args.client_ca,
        }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let Some(source) = args.source else {
        bail!("--source is required: `dir=PATH` or `kubernetes`");
    };
    args.identity.check(&source)?;
    let kube = match source {
        Source::Kubernetes => Some(kube::Client::try_default().await.context(
            "cannot reach Kubernetes (KUBECONFIG, ~/.kube/config or the pod's service account)",
        )?),
        Source::Dir(_) => None,
    };
    let identity = args.identity.issuer(kube.as_ref())?;
    let control_plane = ControlPlane::new(args.root_namespace);
    let source: Box<dyn std::any::Any> = match (source, kube) {
        (Source::Dir(dir), _) => Box::new(DirSource::start(&dir, control_plane.clone())?),
        (Source::Kubernetes, Some(client)) => {
            let options = KubernetesOptions {
                namespace: args.namespace,
                fetch: args.registry.fetch_options()?,
                resync: args.resync,
                resubscribe_grace: args.resubscribe_grace,
                ..KubernetesOptions::default()
            };
            tracing::info!("watching WasmFilter resources");
            Box::new(KubernetesSource::start(
                client,
                control_plane.clone(),
                options,
            )?)
        }
        (Source::Kubernetes, None) => bail!("the Kubernetes source has no client"),
    };

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen for proxies on {}", args.listen))?;
    let grpc = server::serve(&control_plane, listener, tls.as_ref(), identity.clone()).await?;
    tracing::info!(address = %grpc.local_addr(), "control plane listening");

    let admin_listener = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("cannot listen for admin requests on {}", args.admin))?;
    let admin = admin::serve(&control_plane, admin_listener, identity)?;
    tracing::info!(address = %admin.local_addr(), "admin listening");

    shutdown_signal().await;
    tracing::info!("shutting down");
    drop(source);
    grpc.shutdown().await;
    admin.shutdown().await;
    Ok(())
}

async fn push(
    module: PathBuf,
    reference: String,
    username: Option<String>,
    registry: RegistryArgs,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(&module)
        .with_context(|| format!("cannot read the module {}", module.display()))?;
    let auth = match username {
        Some(user) => {
            let password = std::env::var("WEFT_REGISTRY_PASSWORD")
                .context("--username needs the password in WEFT_REGISTRY_PASSWORD")?;
            Some((user, password))
        }
        None => None,
    };
    let digest =
        weft_controlplane::fetch::push(&reference, &bytes, auth, &registry.fetch_options()?)
            .await?;
    let sha256 = weft_controlplane::catalog::sha256_hex(&bytes);
    let mut out = std::io::stdout().lock();
    writeln!(out, "pushed {} to {reference}", module.display())?;
    writeln!(out, "manifest {digest}")?;
    writeln!(
        out,
        "sha256   {sha256}  (the module; use it as the WasmFilter's spec.sha256)"
    )?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
