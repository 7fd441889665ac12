//! Token buckets kept by the proxy and shared by every instance of the filter, on every worker
//! thread: a limit of N admits N, however many instances run.
//!
//! Define a [`Family`] in [`Filter::new`](crate::Filter::new) and keep it in the filter value;
//! then [`Family::take`] tokens from the bucket of a key on each request. A new key starts with
//! a full bucket; a bucket that has refilled to capacity is forgotten, so memory follows the
//! keys active within one refill time and never exceeds [`Spec::max_keys`] buckets.
//!
//! ```no_run
//! use weft_sdk::token_bucket::{Family, Spec};
//! use weft_sdk::{Action, Filter, LocalResponse, Request};
//!
//! struct PerClient {
//!     buckets: Family,
//! }
//!
//! impl Filter for PerClient {
//!     type Config = ();
//!
//!     fn new(_config: ()) -> Result<Self, String> {
//!         // 10 requests per second per client, bursts of up to 20.
//!         let spec = Spec::new(20, 10, std::time::Duration::from_secs(1));
//!         let buckets = Family::define("per_client", spec).map_err(|e| e.to_string())?;
//!         Ok(PerClient { buckets })
//!     }
//!
//!     fn on_request_headers(&self, request: &Request) -> Action {
//!         let client = request.client_address().unwrap_or_default();
//!         match self.buckets.take(&client, 1) {
//!             Ok(taken) if !taken.allowed => Action::Respond(LocalResponse::new(429)),
//!             _ => Action::Continue,
//!         }
//!     }
//! }
//! # weft_sdk::export_filter!(PerClient);
//! ```

use std::fmt;
use std::time::Duration;

use crate::bindings::weft::filter::token_bucket as raw;

/// How a bucket fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spec {
    /// Tokens a full bucket holds; a new key starts full.
    pub capacity: u64,
    /// Tokens added every [`Spec::refill_interval`], up to the capacity.
    pub refill_amount: u64,
    /// Time between refills, in whole milliseconds (at least 1 ms).
    pub refill_interval: Duration,
    /// The most keys kept at once; a take for a new key beyond it fails with
    /// [`TakeError::TooManyKeys`]. Defaults to 100 000.
    pub max_keys: u32,
}

impl Spec {
    /// The default for [`Spec::max_keys`].
    pub const DEFAULT_MAX_KEYS: u32 = 100_000;

    /// A spec with the default key limit.
    pub fn new(capacity: u64, refill_amount: u64, refill_interval: Duration) -> Spec {
        Spec {
            capacity,
            refill_amount,
            refill_interval,
            max_keys: Spec::DEFAULT_MAX_KEYS,
        }
    }

    /// The same spec with another key limit.
    #[must_use]
    pub fn max_keys(mut self, max_keys: u32) -> Spec {
        self.max_keys = max_keys;
        self
    }

    fn to_raw(self) -> raw::BucketSpec {
        raw::BucketSpec {
            capacity: self.capacity,
            refill_amount: self.refill_amount,
            refill_interval_ms: u64::try_from(self.refill_interval.as_millis()).unwrap_or(u64::MAX),
            max_keys: self.max_keys,
        }
    }
}

/// A family of buckets, one per key. A handle is valid in the instance that defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Family(raw::Family);

impl Family {
    /// Define (or look up, if this filter already defined it with the same spec) a family.
    ///
    /// `name` must match `[a-z_][a-z0-9_]*`. Families are per filter: two filters never share
    /// buckets, while the per-route configurations of one filter share a family they define
    /// with the same name and spec.
    pub fn define(name: &str, spec: Spec) -> Result<Family, DefineError> {
        raw::define(name, spec.to_raw())
            .map(Family)
            .map_err(|e| match e {
                raw::DefineError::InvalidName(m) => DefineError::InvalidName(m),
                raw::DefineError::InvalidSpec(m) => DefineError::InvalidSpec(m),
            })
    }

    /// Take `cost` tokens from `key`'s bucket, atomically: all or nothing.
    pub fn take(self, key: &str, cost: u64) -> Result<Taken, TakeError> {
        raw::take(self.0, key, cost)
            .map(|t| Taken {
                allowed: t.allowed,
                remaining: t.remaining,
                retry_after: Duration::from_millis(t.retry_after_ms),
                reset_after: Duration::from_millis(t.reset_after_ms),
            })
            .map_err(|e| match e {
                raw::TakeError::UnknownFamily => TakeError::UnknownFamily,
                raw::TakeError::TooManyKeys => TakeError::TooManyKeys,
            })
    }
}

/// The outcome of [`Family::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether the tokens were taken. When false, nothing was taken.
    pub allowed: bool,
    /// Tokens left in the bucket.
    pub remaining: u64,
    /// When not allowed: how long until `cost` tokens are available (`Duration::MAX`-like
    /// `u64::MAX` milliseconds when the cost exceeds the capacity). Zero when allowed.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
}

/// Why a family could not be defined.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DefineError {
    /// The name is not `[a-z_][a-z0-9_]*`.
    InvalidName(String),
    /// A field of the spec is zero or out of range; the message names it.
    InvalidSpec(String),
}

impl fmt::Display for DefineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefineError::InvalidName(m) | DefineError::InvalidSpec(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DefineError {}

/// Why a take could not be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TakeError {
    /// The family was not defined in this instance.
    UnknownFamily,
    /// The key is new and the family already holds [`Spec::max_keys`] buckets.
    TooManyKeys,
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TakeError::UnknownFamily => "unknown token-bucket family",
            TakeError::TooManyKeys => "too many keys in the token-bucket family",
        })
    }
}

impl std::error::Error for TakeError {}
