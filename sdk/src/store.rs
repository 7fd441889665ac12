//! A key-value store shared by every instance of this filter on every worker of the proxy:
//! one store per filter name, kept across reloads of the filter.
//!
//! Every write gives the entry a new version, never reused, so [`compare_and_swap`] detects
//! any write in between; an exact counter shared by all instances is a loop:
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_sdk::store::{self, StoreError};
//!
//! fn increment(key: &str) -> Result<u64, StoreError> {
//!     loop {
//!         let (n, version) = match store::get(key) {
//!             Some(e) => (e.value.try_into().map(u64::from_le_bytes).unwrap_or(0), e.version),
//!             None => (0, 0),
//!         };
//!         let ttl = Some(Duration::from_secs(60));
//!         match store::compare_and_swap(key, version, &(n + 1).to_le_bytes(), ttl) {
//!             Ok(_) => return Ok(n + 1),
//!             Err(StoreError::Conflict(_)) => continue,
//!             Err(e) => return Err(e),
//!         }
//!     }
//! }
//! ```
//!
//! The store is bounded (100,000 keys and 16 MiB per filter; keys of 1 to 512 bytes, values up
//! to 1 MiB): a write over a limit is refused with a [`StoreError`], and counted in the proxy's
//! `weft_filter_store_refusals_total`. Entries with a time to live are gone once it has passed
//! (the harness's virtual clock moves it in tests).

use std::fmt;
use std::time::Duration;

use crate::bindings::weft::filter::store as raw;

/// A value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bytes last written.
    pub value: Vec<u8>,
    /// Its version, at least 1.
    pub version: u64,
}

/// Why a write was refused; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The key is empty or longer than 512 bytes.
    InvalidKey,
    /// The value is longer than 1 MiB.
    ValueTooLarge,
    /// The store holds its maximum of keys or bytes (expired entries were removed first).
    Full,
    /// [`compare_and_swap`]: another version is there; this one (0: the key is absent).
    Conflict(u64),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidKey => f.write_str("the key is empty or longer than 512 bytes"),
            StoreError::ValueTooLarge => f.write_str("the value is longer than 1 MiB"),
            StoreError::Full => f.write_str("the filter's store is full"),
            StoreError::Conflict(v) => write!(f, "the entry changed (now version {v})"),
        }
    }
}

impl std::error::Error for StoreError {}

fn ttl_ms(ttl: Option<Duration>) -> u64 {
    // A TTL under a millisecond still expires: 1 ms, not "never".
    ttl.map_or(0, |t| {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

fn error(e: raw::StoreError) -> StoreError {
    match e {
        raw::StoreError::InvalidKey => StoreError::InvalidKey,
        raw::StoreError::ValueTooLarge => StoreError::ValueTooLarge,
        raw::StoreError::Full => StoreError::Full,
        raw::StoreError::Conflict(v) => StoreError::Conflict(v),
    }
}

/// The entry of `key`, or `None` when absent or expired.
pub fn get(key: &str) -> Option<Entry> {
    raw::get(key).map(|e| Entry {
        value: e.value,
        version: e.version,
    })
}

/// Write `value` under `key` whatever is there; it expires after `ttl` (`None`: never).
/// Returns the new version.
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64, StoreError> {
    raw::set(key, value, ttl_ms(ttl)).map_err(error)
}

/// Write only if the key's version is `version` (0: only if absent), atomically across every
/// instance and worker. Returns the new version, or [`StoreError::Conflict`] with the current
/// one.
pub fn compare_and_swap(
    key: &str,
    version: u64,
    value: &[u8],
    ttl: Option<Duration>,
) -> Result<u64, StoreError> {
    raw::compare_and_swap(key, version, value, ttl_ms(ttl)).map_err(error)
}

/// Remove `key`; whether it was there.
pub fn delete(key: &str) -> bool {
    raw::delete(key)
}
