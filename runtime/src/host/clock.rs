//! `weft:filter/clock`: time as the host sees it, replaceable so tests can move it virtually.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::HostState;
use crate::bindings::weft::filter::clock::{Datetime, Host};

/// A source of time for filters.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds on a monotonic clock with an arbitrary, fixed origin.
    fn monotonic_nanos(&self) -> u64;
    /// The wall-clock time.
    fn wall(&self) -> SystemTime;
}

/// The operating system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn monotonic_nanos(&self) -> u64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to: for tests of time-dependent filters (token-bucket
/// refills, token expiry) that must not wait.
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicU64,
    wall_origin: SystemTime,
}

impl ManualClock {
    /// A clock at monotonic zero whose wall time starts at `wall`.
    pub fn new(wall: SystemTime) -> Self {
        Self {
            nanos: AtomicU64::new(0),
            wall_origin: wall,
        }
    }

    /// Move both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }

    fn wall(&self) -> SystemTime {
        self.wall_origin + Duration::from_nanos(self.monotonic_nanos())
    }
}

impl Host for HostState {
    fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.shared.clock.monotonic_nanos())
    }

    fn wall_now(&mut self) -> wasmtime::Result<Datetime> {
        // A clock set before 1970 reads as the epoch rather than failing the guest.
        let since = self
            .shared
            .clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Datetime {
            seconds: since.as_secs(),
            nanoseconds: since.subsec_nanos(),
        })
    }
}
