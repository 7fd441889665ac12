//! `weft:filter/clock`: time as the host sees it, replaceable so tests can move it virtually.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::HostState;
use crate::runtime::bindings::weft::filter::clock::{Datetime, Host};

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

impl Host for HostState {
    fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.clock.monotonic_nanos())
    }

    fn wall_now(&mut self) -> wasmtime::Result<Datetime> {
        // A clock set before 1970 reads as the epoch rather than failing the guest.
        let since = self
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
