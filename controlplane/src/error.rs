//! The crate's error type: every variant says what failed and on which file or address.

use std::path::PathBuf;

/// Why the control plane (or one of its parts) could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// The directory watcher could not be set up.
    #[error("cannot watch {} for changes: {error}", path.display())]
    Watch {
        /// The watched directory.
        path: PathBuf,
        /// What the watcher said (part of the message).
        error: notify::Error,
    },
    /// The address of a bound socket could not be read.
    #[error("cannot read the listening socket's address: {0}")]
    LocalAddr(std::io::Error),
    /// The TLS certificate, key or client CA is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The Kubernetes source could not be set up.
    #[error("kubernetes source: {0}")]
    Kubernetes(String),
    /// A part that runs in the background was started outside a Tokio runtime.
    #[error("{0} must be started from within a Tokio runtime")]
    NoRuntime(&'static str),
}
