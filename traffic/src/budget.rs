//! Retry budgets and backoff.
//!
//! A [`Budget`] is Linkerd's (and Finagle's): every request deposits, every retry withdraws,
//! and a retry is allowed while retries stay under `ratio` of the requests of the last `ttl`
//! plus `min_per_second`. Deposits are one relaxed atomic add on the request path; the
//! window is a ring of one-second buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock;
use crate::policy::{BudgetConfig, RetryPolicy};

#[derive(Debug)]
struct Bucket {
    /// The second (on [`clock`]) this bucket counts.
    second: AtomicU64,
    deposits: AtomicU64,
    withdrawals: AtomicU64,
}

/// A retry budget shared by every request of one route or service.
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    buckets: Box<[Bucket]>,
}

impl Budget {
    pub fn new(config: BudgetConfig) -> Self {
        let n = config.ttl.as_secs().clamp(1, 60) as usize;
        Self {
            config,
            buckets: (0..n)
                .map(|_| Bucket {
                    second: AtomicU64::new(0),
                    deposits: AtomicU64::new(0),
                    withdrawals: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn bucket(&self, second: u64) -> &Bucket {
        let n = self.buckets.len() as u64;
        let bucket = &self.buckets[usize::try_from(second % n).unwrap_or(0)];
        let seen = bucket.second.load(Ordering::Acquire);
        if seen != second
            && bucket
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // This second's first request clears what the bucket counted a window ago.
            bucket.deposits.store(0, Ordering::Relaxed);
            bucket.withdrawals.store(0, Ordering::Relaxed);
        }
        bucket
    }

    /// Count a request (a first try).
    pub fn deposit(&self) {
        self.deposit_at(clock::now_ms() / 1000);
    }

    /// Take a retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(clock::now_ms() / 1000)
    }

    fn deposit_at(&self, second: u64) {
        self.bucket(second).deposits.fetch_add(1, Ordering::Relaxed);
    }

    fn withdraw_at(&self, second: u64) -> bool {
        let current = self.bucket(second);
        let n = self.buckets.len() as u64;
        let (mut deposits, mut withdrawals) = (0u64, 0u64);
        for bucket in self.buckets.iter() {
            let s = bucket.second.load(Ordering::Acquire);
            if s + n > second && s <= second {
                deposits += bucket.deposits.load(Ordering::Relaxed);
                withdrawals += bucket.withdrawals.load(Ordering::Relaxed);
            }
        }
        let allowed =
            self.config.ratio * deposits as f64 + f64::from(self.config.min_per_second) * n as f64;
        if (withdrawals as f64) + 1.0 > allowed {
            return false;
        }
        current.withdrawals.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// How long to wait before retry number `retry` (1 for the first retry): exponential from
/// `backoff_base`, capped at `backoff_max`, with jitter over its upper half so that clients
/// that failed together do not come back together.
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let exp = policy
        .backoff_base
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
        .min(policy.backoff_max);
    let half = exp / 2;
    let jitter = getrandom::u64().unwrap_or(0) % (u64::try_from(half.as_micros()).unwrap_or(0) + 1);
    half + Duration::from_micros(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_the_ratio_plus_the_floor() {
        let budget = Budget::new(BudgetConfig {
            ratio: 0.2,
            min_per_second: 1,
            ttl: Duration::from_secs(10),
        });
        let second = 1000;
        for _ in 0..100 {
            budget.deposit_at(second);
        }
        let granted = (0..100).filter(|_| budget.withdraw_at(second)).count();
        // 0.2 × 100 + 1/s × 10 s
        assert_eq!(granted, 30);
        // A window later, the old deposits no longer count; the floor still does.
        let granted = (0..100).filter(|_| budget.withdraw_at(second + 10)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn a_zero_floor_allows_only_the_ratio() {
        let budget = Budget::new(BudgetConfig {
            ratio: 0.5,
            min_per_second: 0,
            ttl: Duration::from_secs(1),
        });
        assert!(!budget.withdraw_at(5));
        budget.deposit_at(5);
        budget.deposit_at(5);
        assert!(budget.withdraw_at(5));
        assert!(!budget.withdraw_at(5));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 5,
            per_try_timeout: None,
            on: Default::default(),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            max_replay_body: 0,
            budget: BudgetConfig::default(),
            attempt_count_header: false,
        };
        for _ in 0..100 {
            let first = backoff(&policy, 1);
            assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10));
            let fifth = backoff(&policy, 5);
            assert!(fifth >= Duration::from_millis(50) && fifth <= Duration::from_millis(100));
            assert!(backoff(&policy, 40) <= Duration::from_millis(100));
        }
    }
}
