//! Where weft sends a request and what it does when that fails.
//!
//! - [`policy`]: the traffic policy schema (load balancing, timeouts, retries, circuit
//!   breaking, outlier detection, health checks, subsets), read from a proxy config, a
//!   control-plane service definition or the wire, with errors that name file, line and field.

#![allow(missing_docs)]

pub mod policy;
