//! `weft:filter/log`: guest log lines go to the proxy's structured log, tagged with the filter.

use super::HostState;
use crate::runtime::bindings::weft::filter::log::{Host, Level};

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
