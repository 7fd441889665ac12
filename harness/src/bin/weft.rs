//! `weft`: the filter author's command line. `weft filter new` creates a filter crate;
//! `weft filter test` runs YAML cases through a built filter on the proxy's own runtime.
//! (The sidecar itself is `weft-proxy`.)

#![allow(clippy::print_stdout)] // `filter test` and `filter new` report on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_harness::{Harness, cases, scaffold};

/// weft's developer tool: create and test WebAssembly filters.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work on one filter: test it, or create a new one.
    #[command(subcommand)]
    Filter(FilterCommand),
}

#[derive(Debug, Subcommand)]
enum FilterCommand {
    /// Run YAML test cases through a filter on the proxy's runtime (virtual clock, seeded
    /// randomness). Exits 1 if a case fails.
    Test {
        /// The filter's component (`.wasm`).
        wasm: PathBuf,
        /// The filter's config (YAML or JSON).
        #[arg(long)]
        config: Option<PathBuf>,
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
        /// The weft checkout whose `weft-sdk` and `weft-harness` the crate depends on (they are
        /// not published yet).
        #[arg(long)]
        sdk_path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.command {
        Command::Filter(FilterCommand::Test {
            wasm,
            config,
            cases,
            name,
        }) => filter_test(&wasm, config.as_deref(), &cases, name),
        Command::Filter(FilterCommand::New {
            name,
            path,
            sdk_path,
        }) => filter_new(&name, path, &sdk_path),
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

fn filter_new(name: &str, path: Option<PathBuf>, sdk_path: &Path) -> ExitCode {
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    match scaffold::create(name, &dir, sdk_path) {
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
