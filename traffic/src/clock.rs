//! A monotonic clock as plain integers, so endpoint state can keep times in atomics.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the process's first use of this clock, plus one (so 0 means "never").
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// Nanoseconds since the process's first use of this clock.
pub fn now_ns() -> u64 {
    u64::try_from(Instant::now().saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// `instant` in the units of [`now_ms`].
pub(crate) fn ms_at(instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX / 2)
        + 1
}
