//! Logging setup: structured logs via `tracing`, as text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What is logged without `RUST_LOG`: `info`, except the access log, which is opt-in as in
/// Envoy, Istio and Linkerd (one line per request on a sidecar's stderr costs more than the
/// proxying itself; see `bench/`).
pub const DEFAULT_FILTER: &str = "info,weft::access=off";

/// Install the global subscriber. `RUST_LOG` overrides [`DEFAULT_FILTER`]; the access log is
/// the `weft::access` target (`RUST_LOG=info` turns it on) and guest logs the `weft::filter`
/// target.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
