//! `weft-proxy`: run the proxy, check a config and its filters without serving, test a filter
//! against YAML cases, or start a new filter crate.

#![allow(clippy::print_stdout)] // `check`, `filter test` and `filter new` report on stdout.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_proxy::Proxy;
use weft_proxy::config::Config;
use weft_proxy::harness::{Harness, cases};
use weft_proxy::scaffold;
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
    /// Validate the config, compile every module and run every filter's `configure`, then exit.
    Check,
    /// Work on one filter: test it, or create a new one.
    #[command(subcommand)]
    Filter(FilterCommand),
}

#[derive(Debug, Subcommand)]
enum FilterCommand {
    /// Run YAML test cases through a filter on the proxy's runtime (virtual clock, seeded
    /// randomness); `--config` is the filter's config (YAML or JSON). Exits 1 if a case fails.
    Test {
        /// The filter's component (`.wasm`).
        wasm: PathBuf,
        /// The cases file (YAML).
        #[arg(long)]
        cases: PathBuf,
        /// The filter's name in logs and metrics (default: the file name without `.wasm`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a filter crate: a filter with one hook, a harness test, a cases file, a README.
    New {
        /// The crate's name (`my-filter`).
        name: String,
        /// Where to create it (default: `./<name>`).
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Some(Command::Filter(command)) = cli.command {
        return match command {
            FilterCommand::Test { wasm, cases, name } => {
                filter_test(&wasm, cli.config.as_deref(), &cases, name)
            }
            FilterCommand::New { name, path } => filter_new(&name, path),
        };
    }
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
        Some(Command::Filter(_)) => unreachable!("handled above"),
        None => serve(config, cli.workers),
    }
}

fn filter_test(wasm: &Path, config: Option<&Path>, cases: &Path, name: Option<String>) -> ExitCode {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    };
    let config = match config.map(cases::load_filter_config).transpose() {
        Ok(c) => c.unwrap_or(serde_json::Value::Null),
        Err(e) => return fail(e.to_string()),
    };
    let file = match cases::CaseFile::load(cases) {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    let name = name.unwrap_or_else(|| {
        wasm.file_stem()
            .map_or_else(|| "filter".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    let Some(wasm_path) = wasm.to_str() else {
        return fail(format!("{}: the path is not UTF-8", wasm.display()));
    };
    let mut builder = Harness::builder(&name, wasm_path).config(config);
    if let Some(seed) = file.seed {
        builder = builder.seed(seed);
    }
    let harness = match builder.load() {
        Ok(h) => h,
        Err(e) => return fail(format!("filter \"{name}\": {e}")),
    };
    let report = cases::run(&harness, &file);
    println!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn filter_new(name: &str, path: Option<PathBuf>) -> ExitCode {
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    match scaffold::create(name, &dir) {
        Ok(created) => {
            println!("{created}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
