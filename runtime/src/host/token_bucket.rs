//! `weft:filter/token-bucket`: token buckets kept by the host, shared by every instance.
//!
//! A filter's pooled instances run on every worker thread at once, so a bucket kept in guest
//! memory would be per instance and a limit of N would admit N per instance. Here the state is
//! one [`BucketFamily`] per (filter, family name, spec) for the whole process, and each take is
//! one critical section on the shard that holds the key: exact under any concurrency.
//!
//! Memory: a bucket that has refilled to capacity is the same as no bucket (a new key starts
//! full), so sweeps drop full buckets without changing any outcome. Each shard sweeps itself
//! when a take finds its sweep time has come, and a family never holds more than `max-keys`
//! buckets: a take for a new key beyond that is refused with `too-many-keys`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;

use super::HostState;
use crate::bindings::weft::filter::token_bucket::{
    BucketSpec, DefineError, Family as Handle, Host, TakeError, TakeResult,
};
use crate::metrics::is_identifier;

/// Shards per family: enough that takes for different keys rarely wait for each other.
const SHARDS: usize = 16;
/// Shortest time between two sweeps of a shard.
const MIN_SWEEP_NANOS: u64 = 100_000_000;
/// Longest time between two sweeps of a shard that is taken from.
const MAX_SWEEP_NANOS: u64 = 60_000_000_000;
/// How often a full family may sweep a shard early to make room for a new key.
const FULL_SWEEP_NANOS: u64 = 10_000_000;
const NANOS_PER_MILLI: u64 = 1_000_000;

/// How a bucket fills, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spec {
    /// Tokens a full bucket holds.
    pub capacity: u64,
    /// Tokens added per interval.
    pub refill_amount: u64,
    /// Nanoseconds per interval.
    pub interval_nanos: u64,
    /// The most buckets kept at once.
    pub max_keys: usize,
}

impl Spec {
    /// Validate a guest's spec; the error names the offending field.
    pub fn new(spec: BucketSpec) -> Result<Self, String> {
        let positive = |value: u64, field: &str| {
            if value == 0 {
                Err(format!("{field} must be at least 1"))
            } else {
                Ok(value)
            }
        };
        let capacity = positive(spec.capacity, "capacity")?;
        let refill_amount = positive(spec.refill_amount, "refill-amount")?;
        let interval_ms = positive(spec.refill_interval_ms, "refill-interval-ms")?;
        let max_keys = positive(u64::from(spec.max_keys), "max-keys")?;
        // Ten years is far beyond any useful interval and keeps nanosecond arithmetic in range.
        const MAX_INTERVAL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
        if interval_ms > MAX_INTERVAL_MS {
            return Err(format!(
                "refill-interval-ms must be at most {MAX_INTERVAL_MS} (ten years)"
            ));
        }
        Ok(Self {
            capacity,
            refill_amount,
            interval_nanos: interval_ms * NANOS_PER_MILLI,
            max_keys: usize::try_from(max_keys).unwrap_or(usize::MAX),
        })
    }

    /// Nanoseconds an empty bucket takes to fill.
    fn fill_nanos(&self) -> u64 {
        self.capacity
            .div_ceil(self.refill_amount)
            .saturating_mul(self.interval_nanos)
    }
}

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    /// The time the last refill interval ended (or, when full, the time it was last seen full).
    stamp: u64,
}

impl Bucket {
    /// Add the tokens of every whole interval since `stamp`.
    fn refill(&mut self, now: u64, spec: &Spec) {
        if self.tokens >= spec.capacity {
            self.stamp = now;
            return;
        }
        let intervals = now.saturating_sub(self.stamp) / spec.interval_nanos;
        if intervals == 0 {
            return;
        }
        self.tokens = self
            .tokens
            .saturating_add(intervals.saturating_mul(spec.refill_amount))
            .min(spec.capacity);
        self.stamp = if self.tokens >= spec.capacity {
            now
        } else {
            self.stamp + intervals * spec.interval_nanos
        };
    }

    /// Nanoseconds until the bucket holds `want` tokens (`want` ≤ capacity).
    fn nanos_until(&self, want: u64, now: u64, spec: &Spec) -> u64 {
        if self.tokens >= want {
            return 0;
        }
        let intervals = (want - self.tokens).div_ceil(spec.refill_amount);
        let into_interval = now.saturating_sub(self.stamp);
        intervals
            .saturating_mul(spec.interval_nanos)
            .saturating_sub(into_interval)
    }
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<Box<str>, Bucket>,
    next_sweep: u64,
    last_full_sweep: Option<u64>,
}

impl Shard {
    /// Drop every bucket that has refilled to capacity; returns how many went.
    fn sweep(&mut self, now: u64, spec: &Spec) -> usize {
        let before = self.buckets.len();
        self.buckets.retain(|_, bucket| {
            bucket.refill(now, spec);
            bucket.tokens < spec.capacity
        });
        self.next_sweep = now + spec.fill_nanos().clamp(MIN_SWEEP_NANOS, MAX_SWEEP_NANOS);
        before - self.buckets.len()
    }
}

/// The buckets of one family, shared by every instance that defined it.
#[derive(Debug)]
pub struct BucketFamily {
    spec: Spec,
    shards: [Mutex<Shard>; SHARDS],
    hasher: std::hash::RandomState,
    keys: AtomicUsize,
    gauge: Gauge,
}

/// The result of [`BucketFamily::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Tokens left.
    pub remaining: u64,
    /// Nanoseconds until `cost` tokens are available; zero when allowed, `u64::MAX` when the
    /// cost exceeds the capacity.
    pub retry_after_nanos: u64,
    /// Nanoseconds until the bucket is full.
    pub reset_after_nanos: u64,
}

/// A take for a new key while the family holds `max-keys` buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyKeys;

impl BucketFamily {
    /// An empty family; `gauge` tracks how many buckets it holds.
    pub fn new(spec: Spec, gauge: Gauge) -> Self {
        Self {
            spec,
            shards: Default::default(),
            hasher: std::hash::RandomState::new(),
            keys: AtomicUsize::new(0),
            gauge,
        }
    }

    /// How many buckets the family holds.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// Whether the family holds no bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take `cost` tokens from `key`'s bucket at time `now` (nanoseconds, monotonic).
    pub fn take(&self, key: &str, cost: u64, now: u64) -> Result<Taken, TooManyKeys> {
        let spec = &self.spec;
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if now >= shard.next_sweep {
            let gone = shard.sweep(now, spec);
            self.forget(gone);
        }
        let bucket = match shard.buckets.get_mut(key) {
            Some(bucket) => {
                bucket.refill(now, spec);
                bucket
            }
            None => {
                if !self.reserve_key(&mut shard, now) {
                    return Err(TooManyKeys);
                }
                shard.buckets.entry(key.into()).or_insert(Bucket {
                    tokens: spec.capacity,
                    stamp: now,
                })
            }
        };
        let allowed = cost <= bucket.tokens;
        if allowed {
            bucket.tokens -= cost;
        }
        let retry_after_nanos = if allowed {
            0
        } else if cost > spec.capacity {
            u64::MAX
        } else {
            bucket.nanos_until(cost, now, spec)
        };
        Ok(Taken {
            allowed,
            remaining: bucket.tokens,
            retry_after_nanos,
            reset_after_nanos: bucket.nanos_until(spec.capacity, now, spec),
        })
    }

    /// Count one more key, sweeping the shard early (at most every 10 ms) when the family is
    /// full. False when there is no room.
    fn reserve_key(&self, shard: &mut Shard, now: u64) -> bool {
        if self.keys.fetch_add(1, Ordering::Relaxed) < self.spec.max_keys {
            self.gauge.inc();
            return true;
        }
        self.keys.fetch_sub(1, Ordering::Relaxed);
        let may_sweep = shard
            .last_full_sweep
            .is_none_or(|at| now.saturating_sub(at) >= FULL_SWEEP_NANOS);
        if !may_sweep {
            return false;
        }
        shard.last_full_sweep = Some(now);
        let gone = shard.sweep(now, &self.spec);
        self.forget(gone);
        if gone == 0 {
            return false;
        }
        self.keys.fetch_add(1, Ordering::Relaxed);
        self.gauge.inc();
        true
    }

    fn forget(&self, gone: usize) {
        if gone > 0 {
            self.keys.fetch_sub(gone, Ordering::Relaxed);
            self.gauge.dec_by(i64::try_from(gone).unwrap_or(i64::MAX));
        }
    }
}

/// What identifies a family: the filter's name, the family's name, and its spec.
type FamilyKey = (Arc<str>, String, Spec);

/// Every bucket family of the process, by filter, family name and spec.
#[derive(Debug)]
pub(crate) struct TokenBuckets {
    families: Mutex<HashMap<FamilyKey, Arc<BucketFamily>>>,
    gauges: prometheus_client::metrics::family::Family<BucketLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(crate) struct BucketLabels {
    filter: String,
    family: String,
}

impl TokenBuckets {
    /// A registry whose families report their size in `gauges`.
    pub(crate) fn new(
        gauges: prometheus_client::metrics::family::Family<BucketLabels, Gauge>,
    ) -> Self {
        Self {
            families: Mutex::new(HashMap::new()),
            gauges,
        }
    }

    /// The family `name` of `filter` with `spec`, created on first use.
    pub(crate) fn family(&self, filter: &Arc<str>, name: &str, spec: Spec) -> Arc<BucketFamily> {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families
            .entry((filter.clone(), name.to_owned(), spec))
            .or_insert_with(|| {
                let gauge = self
                    .gauges
                    .get_or_create(&BucketLabels {
                        filter: filter.to_string(),
                        family: name.to_owned(),
                    })
                    .clone();
                Arc::new(BucketFamily::new(spec, gauge))
            })
            .clone()
    }
}

fn millis_ceil(nanos: u64) -> u64 {
    if nanos == u64::MAX {
        u64::MAX
    } else {
        nanos.div_ceil(NANOS_PER_MILLI)
    }
}

impl Host for HostState {
    fn define(
        &mut self,
        name: String,
        spec: BucketSpec,
    ) -> wasmtime::Result<Result<Handle, DefineError>> {
        if !is_identifier(&name) {
            return Ok(Err(DefineError::InvalidName(format!(
                "bucket family name {name:?} must match [a-z_][a-z0-9_]*"
            ))));
        }
        let spec = match Spec::new(spec) {
            Ok(s) => s,
            Err(message) => return Ok(Err(DefineError::InvalidSpec(message))),
        };
        let family = self.shared.buckets.family(&self.filter, &name, spec);
        let handles = &mut self.buckets;
        if let Some(i) = handles.iter().position(|f| Arc::ptr_eq(f, &family)) {
            return Ok(Ok(i as Handle));
        }
        handles.push(family);
        Ok(Ok((handles.len() - 1) as Handle))
    }

    fn take(
        &mut self,
        family: Handle,
        key: String,
        cost: u64,
    ) -> wasmtime::Result<Result<TakeResult, TakeError>> {
        let Some(family) = self.buckets.get(family as usize) else {
            return Ok(Err(TakeError::UnknownFamily));
        };
        let now = self.shared.clock.monotonic_nanos();
        Ok(match family.take(&key, cost, now) {
            Ok(t) => Ok(TakeResult {
                allowed: t.allowed,
                remaining: t.remaining,
                retry_after_ms: millis_ceil(t.retry_after_nanos),
                reset_after_ms: millis_ceil(t.reset_after_nanos),
            }),
            Err(TooManyKeys) => Err(TakeError::TooManyKeys),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NANOS_PER_MILLI;

    fn family(capacity: u64, amount: u64, interval_ms: u64, max_keys: u32) -> BucketFamily {
        let spec = Spec::new(BucketSpec {
            capacity,
            refill_amount: amount,
            refill_interval_ms: interval_ms,
            max_keys,
        })
        .expect("valid spec");
        BucketFamily::new(spec, Gauge::default())
    }

    #[test]
    fn a_new_key_starts_full_and_runs_out() {
        let f = family(3, 1, 1000, 10);
        let takes: Vec<_> = (0..4).map(|_| f.take("a", 1, 0).expect("room")).collect();
        assert_eq!(
            takes.iter().map(|t| t.allowed).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(takes[2].remaining, 0);
        assert_eq!(takes[3].retry_after_nanos, 1000 * MS);
        assert_eq!(takes[3].reset_after_nanos, 3000 * MS);
        // Another key has its own bucket.
        assert!(f.take("b", 1, 0).expect("room").allowed);
    }

    #[test]
    fn refills_whole_intervals_only_and_never_past_capacity() {
        let f = family(10, 2, 100, 10);
        assert!(f.take("k", 10, 0).expect("room").allowed);
        let t = f.take("k", 1, 99 * MS).expect("room");
        assert!(!t.allowed, "no interval has passed");
        assert_eq!(t.retry_after_nanos, MS);
        let t = f.take("k", 1, 250 * MS).expect("room");
        assert!(t.allowed);
        assert_eq!(t.remaining, 3, "two intervals of 2, minus 1");
        // The half interval already elapsed counts toward the next refill.
        assert_eq!(t.reset_after_nanos, (400 - 50) * MS);
        let t = f.take("k", 0, 100_000 * MS).expect("room");
        assert_eq!(t.remaining, 10);
    }

    #[test]
    fn a_cost_above_capacity_is_never_allowed_and_takes_nothing() {
        let f = family(5, 1, 10, 10);
        let t = f.take("k", 6, 0).expect("room");
        assert!(!t.allowed);
        assert_eq!(t.remaining, 5);
        assert_eq!(t.retry_after_nanos, u64::MAX);
    }

    #[test]
    fn full_buckets_are_swept_and_keys_are_bounded() {
        let f = family(1, 1, 1000, 100);
        for i in 0..100 {
            assert!(f.take(&format!("k{i}"), 1, 0).expect("room").allowed);
        }
        assert_eq!(f.len(), 100);
        assert_eq!(f.take("one-more", 1, 0), Err(TooManyKeys));
        assert_eq!(f.len(), 100);
        // After a second every bucket is full again and may go; a new key makes room.
        assert!(f.take("one-more", 1, 1000 * MS).expect("swept").allowed);
        assert!(f.len() < 100, "the sweep dropped the refilled buckets");
    }

    #[test]
    fn concurrent_takes_never_admit_more_than_capacity() {
        let f = Arc::new(family(1000, 1, 3_600_000, 10));
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if f.take("shared", 1, 0).expect("room").allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 1000);
    }

    #[test]
    fn specs_name_the_bad_field() {
        let spec = |capacity, refill_amount, refill_interval_ms, max_keys| BucketSpec {
            capacity,
            refill_amount,
            refill_interval_ms,
            max_keys,
        };
        assert!(
            Spec::new(spec(0, 1, 1, 1))
                .expect_err("invalid")
                .contains("capacity")
        );
        assert!(
            Spec::new(spec(1, 0, 1, 1))
                .expect_err("invalid")
                .contains("refill-amount")
        );
        assert!(
            Spec::new(spec(1, 1, 0, 1))
                .expect_err("invalid")
                .contains("refill-interval-ms")
        );
        assert!(
            Spec::new(spec(1, 1, 1, 0))
                .expect_err("invalid")
                .contains("max-keys")
        );
        assert!(is_identifier("per_client") && !is_identifier("Per") && !is_identifier("1x"));
    }
}
