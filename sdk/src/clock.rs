//! Time, controlled by the proxy (the test harness can move it virtually).
//!
//! Prefer these to `std::time`: the host decides what time it is, so filters behave the same in
//! tests with a virtual clock.
//!
//! ```no_run
//! use weft_sdk::clock;
//!
//! let start = clock::monotonic_now();
//! // ... work ...
//! let elapsed = clock::monotonic_now() - start;
//! let now = clock::wall_now();
//! # let _ = (elapsed, now);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::weft::filter::clock as raw;

/// Time on a monotonic clock with an arbitrary origin, shared by all instances of the proxy
/// process. It never decreases: subtract two readings to measure an interval.
pub fn monotonic_now() -> Duration {
    Duration::from_nanos(raw::monotonic_now())
}

/// The wall-clock time.
pub fn wall_now() -> SystemTime {
    let now = raw::wall_now();
    let since_epoch =
        Duration::from_secs(now.seconds) + Duration::from_nanos(u64::from(now.nanoseconds));
    UNIX_EPOCH + since_epoch
}
