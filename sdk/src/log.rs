//! Levelled logging into the proxy's structured log, tagged with the filter's name.
//!
//! The functions take a finished message. The [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error) macros take
//! `format!` arguments and skip the formatting when the level is disabled:
//!
//! ```no_run
//! use weft_sdk::log;
//!
//! log::info("configured");
//! weft_sdk::debug!("saw {} headers", 3);
//! if log::enabled(log::Level::Trace) {
//!     log::trace(&format!("{:?}", [1, 2, 3]));
//! }
//! ```

use crate::bindings::weft::filter::log as raw;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the filter handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    fn into_raw(self) -> raw::Level {
        match self {
            Level::Trace => raw::Level::Trace,
            Level::Debug => raw::Level::Debug,
            Level::Info => raw::Level::Info,
            Level::Warn => raw::Level::Warn,
            Level::Error => raw::Level::Error,
        }
    }
}

/// Write one log line at `level`.
pub fn log(level: Level, message: &str) {
    raw::log(level.into_raw(), message);
}

/// Whether a line at `level` would be written; lets a filter skip building the message.
pub fn enabled(level: Level) -> bool {
    raw::enabled(level.into_raw())
}

/// Write one line at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Write one line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Write one line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Write one line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Write one line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Log at a level with `format!` arguments, formatting only when the level is enabled.
#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $($arg:tt)+) => {{
        let level = $level;
        if $crate::log::enabled(level) {
            $crate::log::log(level, &::std::format!($($arg)+));
        }
    }};
}

/// Log at [`Level::Trace`](crate::log::Level::Trace) with `format!` arguments, formatting only
/// when that level is enabled.
///
/// ```no_run
/// weft_sdk::trace!("header count: {}", 12);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Trace, $($arg)+) };
}

/// Log at [`Level::Debug`](crate::log::Level::Debug) with `format!` arguments, formatting only
/// when that level is enabled.
///
/// ```no_run
/// weft_sdk::debug!("route {:?}", Some("default"));
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Debug, $($arg)+) };
}

/// Log at [`Level::Info`](crate::log::Level::Info) with `format!` arguments, formatting only
/// when that level is enabled.
///
/// ```no_run
/// let path = "/";
/// weft_sdk::info!("saw request {path}");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Info, $($arg)+) };
}

/// Log at [`Level::Warn`](crate::log::Level::Warn) with `format!` arguments, formatting only
/// when that level is enabled.
///
/// ```no_run
/// weft_sdk::warn!("ignoring header {}", "x-debug");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Warn, $($arg)+) };
}

/// Log at [`Level::Error`](crate::log::Level::Error) with `format!` arguments, formatting only
/// when that level is enabled.
///
/// ```no_run
/// weft_sdk::error!("bad upstream status {}", 502);
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__log!($crate::log::Level::Error, $($arg)+) };
}
