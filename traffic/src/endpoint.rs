//! What the proxy knows about one endpoint while it serves: requests outstanding, a latency
//! estimate, and whether it may be chosen (passive ejections, active health). Lock-free: every
//! request touches it.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock;
use crate::policy::OutlierDetection;

/// How long the latency estimate takes to forget (Linkerd's peak-EWMA decay).
const DECAY: Duration = Duration::from_secs(10);
/// The latency estimate of an endpoint that has answered nothing yet.
const DEFAULT_RTT_NS: f64 = 1_000_000.0;

const HEALTH_PENDING: u8 = 0;
const HEALTH_UP: u8 = 1;
const HEALTH_DOWN: u8 = 2;

/// One endpoint's shared state.
#[derive(Debug)]
pub struct EndpointState {
    /// `host:port`, which also places the endpoint on a consistent-hash ring.
    key: Box<str>,
    weight: u32,
    /// Not ready (Kubernetes: terminating): chosen only when no ready endpoint is left.
    ready: bool,
    in_flight: AtomicU32,
    /// Peak-EWMA of response latency in ns (`f64` bits), and when it was last updated (ns on
    /// [`clock`]).
    rtt_ns: AtomicU64,
    rtt_at: AtomicU64,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    /// Ejected until this time (ms on [`clock`]); 0: not ejected.
    ejected_until_ms: AtomicU64,
    health: AtomicU8,
}

/// How an attempt at an endpoint ended, for outlier detection and the latency estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head that is not a 5xx.
    Success,
    /// A 5xx response.
    ServerError,
    /// No connection, a reset, or no response head in time.
    Gateway,
}

impl EndpointState {
    /// `weight` 0 counts as 1. With `health_checked`, the endpoint is not chosen until its
    /// first check passes.
    pub fn new(key: &str, weight: u32, ready: bool, health_checked: bool) -> Self {
        Self {
            key: key.into(),
            weight: weight.max(1),
            ready,
            in_flight: AtomicU32::new(0),
            rtt_ns: AtomicU64::new(DEFAULT_RTT_NS.to_bits()),
            rtt_at: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            health: AtomicU8::new(if health_checked {
                HEALTH_PENDING
            } else {
                HEALTH_UP
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request as outstanding until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { state: self }
    }

    /// The least-request cost: outstanding requests × latency estimate, over the weight.
    pub fn load(&self, now_ns: u64) -> f64 {
        let rtt = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        let at = self.rtt_at.load(Ordering::Relaxed);
        // An estimate that has not been refreshed decays toward the default, so an endpoint
        // that was slow once is tried again eventually.
        let elapsed = now_ns.saturating_sub(at) as f64;
        let keep = (-elapsed / DECAY.as_nanos() as f64).exp();
        let rtt = rtt * keep + DEFAULT_RTT_NS * (1.0 - keep);
        (f64::from(self.in_flight()) + 1.0) * rtt / f64::from(self.weight)
    }

    /// Whether the endpoint may be chosen now: not ejected and not failing its health checks.
    pub fn available(&self, now_ms: u64) -> bool {
        self.health.load(Ordering::Relaxed) == HEALTH_UP && !self.ejected(now_ms)
    }

    /// Whether passive outlier detection has the endpoint out now.
    pub fn ejected(&self, now_ms: u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && until > now_ms
    }

    /// Whether active health checks have the endpoint out (or have not passed it yet).
    pub fn unhealthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) != HEALTH_UP
    }

    /// Record a health check's verdict: the endpoint is up, or down.
    pub fn set_healthy(&self, up: bool) {
        self.health
            .store(if up { HEALTH_UP } else { HEALTH_DOWN }, Ordering::Relaxed);
    }

    /// Record how an attempt ended after `latency`. Returns true when this failure should
    /// eject the endpoint (the caller checks the share already out, then calls
    /// [`eject`](Self::eject)).
    pub fn record(
        &self,
        outcome: Outcome,
        latency: Duration,
        outlier: Option<&OutlierDetection>,
    ) -> bool {
        if outcome != Outcome::Gateway {
            self.observe_rtt(latency);
        }
        if outcome == Outcome::Success {
            // Cheap when already 0: a load, no store.
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let Some(outlier) = outlier else {
            return false;
        };
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= outlier.consecutive_failures && !self.ejected(clock::now_ms())
    }

    /// Take the endpoint out for `base × ejections` (at most `max`). Returns how long.
    pub fn eject(&self, outlier: &OutlierDetection, now_ms: u64) -> Duration {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = outlier
            .base_ejection_time
            .saturating_mul(n)
            .min(outlier.max_ejection_time);
        let until = now_ms + u64::try_from(time.as_millis()).unwrap_or(u64::MAX / 2);
        self.ejected_until_ms.store(until.max(1), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        time
    }

    fn observe_rtt(&self, latency: Duration) {
        let now = clock::now_ns();
        let sample = latency.as_nanos() as f64;
        let prev = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        let at = self.rtt_at.load(Ordering::Relaxed);
        let next = if sample > prev {
            // Peak: a slowdown counts at once.
            sample
        } else {
            let elapsed = now.saturating_sub(at) as f64;
            let keep = (-elapsed / DECAY.as_nanos() as f64).exp();
            prev * keep + sample * (1.0 - keep)
        };
        self.rtt_ns.store(next.to_bits(), Ordering::Relaxed);
        self.rtt_at.store(now, Ordering::Relaxed);
    }
}

/// An outstanding request; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight<'a> {
    state: &'a EndpointState,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether one more endpoint of `endpoints` may be ejected now: fewer than
/// `max_ejection_percent` of them are out, but at least one always may be.
pub fn may_eject<'a>(
    endpoints: impl ExactSizeIterator<Item = &'a EndpointState>,
    outlier: &OutlierDetection,
    now_ms: u64,
) -> bool {
    let total = endpoints.len();
    let out = endpoints.filter(|e| e.ejected(now_ms)).count();
    let max = (total * usize::from(outlier.max_ejection_percent) / 100).max(1);
    out < max
}
