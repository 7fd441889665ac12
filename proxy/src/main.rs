//! `weft-proxy`: the sidecar. Serve a config, or check it and its filters without serving.
//! (The filter author's commands, `filter new` and `filter test`, are in `weft`, from the
//! `weft-harness` crate.)

#![allow(clippy::print_stdout)] // `check` reports on stdout.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_proxy::Proxy;
use weft_proxy::config::Config;
use weft_proxy::telemetry::{self, LogFormat};

/// weft's sidecar proxy: HTTP/1.1, HTTP/2 and gRPC through a chain of WebAssembly filters.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The config file (YAML).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t, global = true)]
    log_format: LogFormat,
    /// Worker threads serving traffic (default: one per core this process may run on), like
    /// Envoy's `--concurrency` or nginx's `worker_processes`.
    #[arg(long)]
    workers: Option<NonZeroUsize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the config until SIGTERM or Ctrl-C, then drain (the default).
    Serve,
    /// Validate the config, compile every module and run every filter's `configure`, then exit.
    Check,
}

fn main() -> ExitCode {
    weft_runtime::memory::return_freed_memory();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let Some(path) = cli.config else {
        eprintln!("error: --config FILE is required");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Check) => match Proxy::load(&config) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} listeners, {} filters configured)",
                    path.display(),
                    loaded.listener_count(),
                    loaded.filter_count()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Some(Command::Serve) | None => serve(config, cli.workers),
    }
}

fn serve(config: Config, workers: Option<NonZeroUsize>) -> ExitCode {
    // One worker gets a current-thread runtime: the same event loop without the work-stealing
    // scheduler's atomics and queues (`bench/` measures the difference).
    let mut builder = match workers.map(NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let proxy = match Proxy::start(config).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        proxy.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
