//! What keeps one misbehaving filter from costing everyone else: a breaker that stops calling a
//! filter that keeps overrunning its time budget, caps on its concurrent calls and held
//! delays, and failure logs throttled per filter.
//!
//! All of it is a few atomics per loaded filter, checked once per call.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::FilterHealthMetrics;

/// Consecutive budget overruns that open the breaker.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long the breaker first stays open; each reopening doubles it.
pub const BREAKER_BASE: Duration = Duration::from_secs(1);
/// The longest the breaker stays open at once.
pub const BREAKER_MAX: Duration = Duration::from_secs(60);
/// At most one failure log line per filter per this interval; the rest are counted and
/// reported with the next line.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The per-filter caps, from the proxy's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterCaps {
    /// Calls of one filter in progress at once, waiting ones included; over it a call is
    /// answered by the failure policy (reason `overloaded`).
    pub max_concurrent_calls: u32,
    /// Requests one filter may hold in a `delay` at once; over it the delay is skipped.
    pub max_active_delays: u32,
    /// Outbound calls (the `call` action) one filter may have in flight at once; over it a
    /// call gets `too-many-calls`.
    pub max_outbound_calls: u32,
}

impl Default for FilterCaps {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 1024,
            max_active_delays: 1024,
            max_outbound_calls: 1024,
        }
    }
}

/// Why a call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShortCircuit {
    /// The breaker is open.
    BreakerOpen,
    /// Too many calls in progress.
    Overloaded,
}

/// The state of one loaded filter's protections.
#[derive(Debug)]
pub(crate) struct Health {
    origin: Instant,
    caps: FilterCaps,
    metrics: FilterHealthMetrics,
    /// Per hook (in `Hook::index` order): overruns since its last call that
    /// finished in time. Per hook, so that a spinning request hook is not excused by the
    /// quick response hooks of the same requests.
    overruns: [AtomicU32; 5],
    /// Milliseconds since `origin` until which the breaker is open; 0: closed.
    open_until: AtomicU64,
    /// How many times in a row the breaker opened (the backoff's exponent).
    openings: AtomicU32,
    in_progress: AtomicU32,
    delays: AtomicU32,
    calls: AtomicU32,
    /// Milliseconds since `origin` before which no failure line is written.
    next_log: AtomicU64,
    suppressed: AtomicU64,
}

impl Health {
    pub(crate) fn new(caps: FilterCaps, metrics: FilterHealthMetrics) -> Self {
        Self {
            origin: Instant::now(),
            caps,
            metrics,
            overruns: Default::default(),
            open_until: AtomicU64::new(0),
            openings: AtomicU32::new(0),
            in_progress: AtomicU32::new(0),
            delays: AtomicU32::new(0),
            calls: AtomicU32::new(0),
            next_log: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `Err` while the breaker is open (counted). One relaxed load when it is closed.
    pub(crate) fn check_breaker(&self) -> Result<(), ShortCircuit> {
        if self.breaker_open() {
            self.metrics.short_circuits[0].inc();
            return Err(ShortCircuit::BreakerOpen);
        }
        Ok(())
    }

    /// Count a call that may yield as in progress, or refuse it (counted) when the filter has
    /// its maximum in progress. Calls that cannot yield need no count: at most one per worker
    /// thread runs at a time.
    pub(crate) fn enter(&self) -> Result<CallGuard<'_>, ShortCircuit> {
        let before = self.in_progress.fetch_add(1, Ordering::AcqRel);
        let guard = CallGuard(self);
        if before >= self.caps.max_concurrent_calls {
            self.metrics.short_circuits[1].inc();
            return Err(ShortCircuit::Overloaded);
        }
        Ok(guard)
    }

    /// Whether the breaker is open now (a running call may stop early).
    pub(crate) fn breaker_open(&self) -> bool {
        let open_until = self.open_until.load(Ordering::Relaxed);
        open_until != 0 && self.now_ms() < open_until
    }

    /// Whether a call of `hook` overran since the last one that finished in time (the
    /// breaker may be open or half open).
    pub(crate) fn troubled(&self, hook: usize) -> bool {
        self.overruns
            .get(hook)
            .is_some_and(|o| o.load(Ordering::Relaxed) != 0)
    }

    /// A call of `hook` ran past its budget. Returns the open time when this overrun opened
    /// the breaker (the caller logs it once).
    pub(crate) fn overran(&self, hook: usize) -> Option<Duration> {
        let counter = self.overruns.get(hook)?;
        let overruns = counter.fetch_add(1, Ordering::AcqRel) + 1;
        if overruns < BREAKER_THRESHOLD || self.breaker_open() {
            return None;
        }
        let openings = self.openings.fetch_add(1, Ordering::AcqRel);
        let open_for = BREAKER_BASE
            .saturating_mul(1 << openings.min(16))
            .min(BREAKER_MAX);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX))
            .max(1);
        self.open_until.store(until, Ordering::Release);
        self.metrics.breaker_open.set(1);
        Some(open_for)
    }

    /// A call of `hook` finished within its budget. Returns true when that closed the
    /// breaker (no hook is overrunning any more).
    pub(crate) fn finished_in_time(&self, hook: usize) -> bool {
        match self.overruns.get(hook) {
            Some(counter) if counter.load(Ordering::Relaxed) != 0 => {
                counter.store(0, Ordering::Release);
            }
            _ => return false,
        }
        if self
            .overruns
            .iter()
            .any(|o| o.load(Ordering::Relaxed) >= BREAKER_THRESHOLD)
        {
            return false;
        }
        let was_open = self.openings.swap(0, Ordering::AcqRel) > 0;
        self.open_until.store(0, Ordering::Release);
        if was_open {
            self.metrics.breaker_open.set(0);
        }
        was_open
    }

    /// Hold one more delayed request, or `None` (counted) when the filter holds its maximum.
    pub(crate) fn hold_delay(&self) -> Option<DelayGuard<'_>> {
        let before = self.delays.fetch_add(1, Ordering::AcqRel);
        let guard = DelayGuard(self);
        if before >= self.caps.max_active_delays {
            self.metrics.delays_overflow.inc();
            return None;
        }
        Some(guard)
    }

    /// Count one more outbound call in flight, or `None` when the filter has its maximum.
    pub(crate) fn hold_call(&self) -> Option<OutboundGuard<'_>> {
        let before = self.calls.fetch_add(1, Ordering::AcqRel);
        let guard = OutboundGuard(self);
        (before < self.caps.max_outbound_calls).then_some(guard)
    }

    /// Whether a failure line may be written now; `Some(n)` with the lines suppressed since
    /// the last one.
    pub(crate) fn log_admits(&self) -> Option<u64> {
        let now = self.now_ms();
        let next = self.next_log.load(Ordering::Relaxed);
        let interval = u64::try_from(FAILURE_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next_log
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A call in progress, counted against [`FilterCaps::max_concurrent_calls`].
#[derive(Debug)]
pub struct CallGuard<'a>(&'a Health);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request held in a delay.
#[derive(Debug)]
pub struct DelayGuard<'a>(&'a Health);

impl Drop for DelayGuard<'_> {
    fn drop(&mut self) {
        self.0.delays.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An outbound call in flight.
#[derive(Debug)]
pub struct OutboundGuard<'a>(&'a Health);

impl Drop for OutboundGuard<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FilterMetrics;

    fn health(caps: FilterCaps) -> Health {
        Health::new(caps, FilterMetrics::new().filter_health("f"))
    }

    #[test]
    fn the_breaker_opens_after_consecutive_overruns_and_closes_after_a_good_call() {
        let h = health(FilterCaps::default());
        for _ in 1..BREAKER_THRESHOLD {
            assert_eq!(h.overran(0), None);
            // Another hook of the same requests finishing in time excuses nothing.
            assert!(!h.finished_in_time(2));
            assert!(h.check_breaker().is_ok());
        }
        assert_eq!(h.overran(0), Some(BREAKER_BASE));
        assert_eq!(h.check_breaker(), Err(ShortCircuit::BreakerOpen));
        // A call of the overrunning hook in time (a probe after the backoff) closes it.
        assert!(!h.finished_in_time(2));
        assert!(h.finished_in_time(0));
        assert!(h.check_breaker().is_ok());
        assert!(!h.finished_in_time(0), "already closed");
    }

    #[test]
    fn the_backoff_doubles_with_each_reopening_up_to_the_maximum() {
        let h = health(FilterCaps::default());
        let mut seen = Vec::new();
        for _ in 0..10 {
            for _ in 0..BREAKER_THRESHOLD {
                if let Some(open_for) = h.overran(1) {
                    seen.push(open_for);
                }
            }
            // The probe after the backoff overran again.
            h.open_until.store(0, Ordering::Release);
        }
        assert_eq!(seen[0], BREAKER_BASE);
        assert_eq!(seen[1], BREAKER_BASE * 2);
        assert_eq!(seen[2], BREAKER_BASE * 4);
        assert_eq!(*seen.last().expect("openings"), BREAKER_MAX);
    }

    #[test]
    fn concurrent_calls_and_delays_are_capped() {
        let h = health(FilterCaps {
            max_concurrent_calls: 2,
            max_active_delays: 1,
            max_outbound_calls: 1,
        });
        let a = h.enter().expect("first");
        let b = h.enter().expect("second");
        assert_eq!(h.enter().err(), Some(ShortCircuit::Overloaded));
        drop((a, b));
        assert!(h.enter().is_ok(), "slots free again");

        let held = h.hold_delay().expect("first delay");
        assert!(h.hold_delay().is_none(), "over the cap");
        drop(held);
        assert!(h.hold_delay().is_some());

        let call = h.hold_call().expect("first call");
        assert!(h.hold_call().is_none(), "over the cap");
        drop(call);
        assert!(h.hold_call().is_some(), "a slot is free again");
    }

    #[test]
    fn failure_logs_are_throttled_with_a_count() {
        let h = health(FilterCaps::default());
        assert_eq!(h.log_admits(), Some(0));
        for _ in 0..1000 {
            assert_eq!(h.log_admits(), None);
        }
        h.next_log.store(0, Ordering::Release);
        assert_eq!(h.log_admits(), Some(1000));
    }
}
