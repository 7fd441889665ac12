//! `weft-controlplane`: serves filter definitions from a directory to proxies over gRPC.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use weft_controlplane::source::dir::DirSource;
use weft_controlplane::tls::TlsConfig;
use weft_controlplane::{ControlPlane, DEFAULT_ROOT_NAMESPACE, admin, server};

/// weft's control plane: streams WasmFilter definitions to proxies.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where definitions come from: `dir=PATH`, a directory of WasmFilter YAML files.
    #[arg(long, value_name = "SOURCE")]
    source: Source,
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
}

/// A definition source named on the command line.
#[derive(Debug, Clone)]
enum Source {
    Dir(PathBuf),
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
        if text == "kubernetes" || text.starts_with("kubernetes=") {
            return Err(
                "the kubernetes source is not available in this build; only `dir=PATH` is \
                 supported for now"
                    .to_owned(),
            );
        }
        Err(format!(
            "unknown source {text:?}; expected `dir=PATH` (a directory of WasmFilter YAML files)"
        ))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    match runtime.block_on(run(args)) {
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
    let control_plane = ControlPlane::new(args.root_namespace);
    let Source::Dir(dir) = args.source;
    let source = DirSource::start(&dir, control_plane.clone())?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen for proxies on {}", args.listen))?;
    let grpc = server::serve(&control_plane, listener, tls.as_ref()).await?;
    tracing::info!(address = %grpc.local_addr(), "control plane listening");

    let admin_listener = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("cannot listen for admin requests on {}", args.admin))?;
    let admin = admin::serve(&control_plane, admin_listener)?;
    tracing::info!(address = %admin.local_addr(), "admin listening");

    shutdown_signal().await;
    tracing::info!("shutting down");
    drop(source);
    grpc.shutdown().await;
    admin.shutdown().await;
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
