//! `weft:filter/log`: guest log lines go to the proxy's structured log, tagged with the filter,
//! and to a [`LogSink`] when one is installed (the test harness records them).

use super::HostState;
use crate::bindings::weft::filter::log::{Host, Level};

/// The level of a filter's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very fine detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// A failure the filter could not handle.
    Error,
}

impl LogLevel {
    /// The level's name in lower case, as in config files and test cases.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// Receives every line a filter logs, at every level, as well as the proxy's log.
pub trait LogSink: Send + Sync + 'static {
    /// Filter `filter` logged `message` at `level` (clipped to the proxy's line limit).
    fn log(&self, filter: &str, level: LogLevel, message: &str);
}

/// Longest log line kept from a guest; a filter cannot flood the log with one call.
const MAX_LOG_LINE: usize = 8 * 1024;

fn clip(message: &str) -> &str {
    if message.len() <= MAX_LOG_LINE {
        return message;
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let filter = &*self.filter;
        let message = clip(&message);
        if let Some(sink) = &self.shared.log_sink {
            sink.log(filter, level.into(), message);
        }
        match level {
            Level::Trace => tracing::trace!(target: "weft::filter", filter, "{message}"),
            Level::Debug => tracing::debug!(target: "weft::filter", filter, "{message}"),
            Level::Info => tracing::info!(target: "weft::filter", filter, "{message}"),
            Level::Warn => tracing::warn!(target: "weft::filter", filter, "{message}"),
            Level::Error => tracing::error!(target: "weft::filter", filter, "{message}"),
        }
        Ok(())
    }

    fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        if self.shared.log_sink.is_some() {
            return Ok(true);
        }
        Ok(match level {
            Level::Trace => tracing::enabled!(target: "weft::filter", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "weft::filter", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "weft::filter", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "weft::filter", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "weft::filter", tracing::Level::ERROR),
        })
    }

    fn report_panic(&mut self, message: String) -> wasmtime::Result<()> {
        self.record_panic(message);
        Ok(())
    }
}
