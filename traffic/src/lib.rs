//! Where weft sends a request and what it does when that fails.
//!
//! - [`policy`]: the traffic policy schema (load balancing, timeouts, retries, circuit
//!   breaking, outlier detection, health checks, subsets), read from a proxy config, a
//!   control-plane service definition or the wire, with errors that name file, line and field.
//! - [`endpoint`]: one endpoint's live state — outstanding requests, a peak-EWMA latency,
//!   ejections and health — in atomics, since every request touches it.
//! - [`balance`]: picking an endpoint: smooth weighted round robin, weighted random, power of
//!   two choices (least request), a consistent-hash ring.
//! - [`budget`]: retry budgets (a share of requests plus a floor) and backoff.
//!
//! No I/O and no async here: the proxy owns connections and timers.

#![allow(missing_docs)]

pub mod balance;
pub mod budget;
mod clock;
pub mod endpoint;
pub mod policy;

pub use clock::{now_ms, now_ns};
