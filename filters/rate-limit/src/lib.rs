//! weft's first-party rate-limit filter: token buckets kept by the proxy, shared by every
//! instance on every worker thread, keyed by facts of the request (client address, headers,
//! path, route, method). Over the limit, a request gets a 429 with `retry-after` and
//! `x-ratelimit-*` quota headers.
//!
//! The configuration reference is `filters/rate-limit/README.md`. The request path is split
//! into pure parts that unit tests run natively ([`config`], [`key`], [`decide`]) and the glue
//! to the host in this file.

pub mod config;
pub mod decide;
pub mod key;

use std::cell::Cell;

use weft_sdk::metrics::Counter;
use weft_sdk::token_bucket::{Family, Spec, TakeError};
use weft_sdk::{Action, Filter, Hooks, Request};

use crate::config::{Config, OnKeyOverflow, Plan};
use crate::decide::{Bucket, Outcome, Verdict};
use crate::key::Facts;

/// The filter value of one instance: the validated plan and the host handles.
pub struct RateLimit {
    plan: Plan,
    /// One bucket family per limit, in `plan.limits` order.
    families: Vec<Family>,
    /// `ratelimit_decisions{limit, decision}`.
    decisions: Counter,
    /// Buffers reused from request to request, so the warm path does not allocate for them.
    /// (`Cell` + `take`: hooks never re-enter, and nothing here can panic on a busy borrow.)
    scratch: Cell<Scratch>,
    /// Whether this instance has warned about a full family yet.
    warned_overflow: Cell<bool>,
}

#[derive(Default)]
struct Scratch {
    key: String,
    headers: Vec<Option<Option<Vec<u8>>>>,
    outcomes: Vec<Outcome>,
}

impl Filter for RateLimit {
    type Config = Config;
    // No response hook: quota headers go out through `add_response_header`.
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(config: Config) -> Result<Self, String> {
        let plan = Plan::new(config)?;
        let families = plan
            .limits
            .iter()
            .enumerate()
            .map(|(i, limit)| {
                let spec = Spec::new(limit.capacity, limit.refill_amount, limit.interval)
                    .max_keys(limit.max_keys);
                Family::define(&limit.name, spec)
                    .map_err(|e| format!("config field `limits[{i}]`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let decisions = Counter::define(
            "ratelimit_decisions",
            "Rate-limit decisions by limit: allowed, limited, shadow_limited, overflow \
             (key table full), skipped (no key), error",
            &["limit", "decision"],
        )
        .map_err(|e| e.to_string())?;
        Ok(RateLimit {
            plan,
            families,
            decisions,
            scratch: Cell::default(),
            warned_overflow: Cell::new(false),
        })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let plan = &self.plan;
        let mut scratch = self.scratch.take();
        scratch.outcomes.clear();
        let mut facts = Facts::new(request, &plan.headers, &mut scratch.headers);
        for (limit, family) in plan.limits.iter().zip(&self.families) {
            let outcome = if key::build(limit, &mut facts, &mut scratch.key) {
                self.take(limit, *family, &scratch.key)
            } else {
                Outcome::Skipped
            };
            self.decisions
                .add(&[&limit.name, outcome.label(plan.shadow)], 1);
            if plan.shadow && matches!(outcome, Outcome::Limited(_)) {
                weft_sdk::debug!(
                    "shadow mode: {} {} would be limited by {}",
                    request.method(),
                    request.path(),
                    limit.name
                );
            }
            scratch.outcomes.push(outcome);
        }
        let verdict = decide::decide(plan, &scratch.outcomes);
        self.scratch.set(scratch);
        match verdict {
            Verdict::Allow(None) => Action::Continue,
            Verdict::Allow(Some(quota)) => {
                let mut digits = [0; 20];
                for (name, value) in quota.headers() {
                    // The names and values are valid; an error would mean the host forbids
                    // them, and the request is better served without the header than failed.
                    let _ = request.add_response_header(name, decimal(value, &mut digits));
                }
                Action::Continue
            }
            Verdict::Deny(denial) => {
                weft_sdk::debug!(
                    "{} {} limited by {}",
                    request.method(),
                    request.path(),
                    plan.limits[denial.limit].name
                );
                Action::Respond(decide::response(plan, &denial))
            }
        }
    }
}

impl RateLimit {
    fn take(&self, limit: &config::Limit, family: Family, key: &str) -> Outcome {
        match family.take(key, limit.cost) {
            Ok(taken) => {
                let bucket = Bucket {
                    remaining: taken.remaining,
                    retry_after: taken.retry_after,
                    reset_after: taken.reset_after,
                };
                if taken.allowed {
                    Outcome::Allowed(bucket)
                } else {
                    Outcome::Limited(bucket)
                }
            }
            Err(TakeError::TooManyKeys) => {
                if !self.warned_overflow.replace(true) {
                    let policy = match self.plan.on_key_overflow {
                        OnKeyOverflow::Allow => "not limited",
                        OnKeyOverflow::Deny => "denied",
                    };
                    weft_sdk::warn!(
                        "limit {} holds max_keys ({}) keys: requests with new keys are {policy} \
                         until buckets refill (counted as decision=\"overflow\")",
                        limit.name,
                        limit.max_keys
                    );
                }
                Outcome::Overflow
            }
            Err(error) => {
                weft_sdk::error!("limit {}: {error}; not applied", limit.name);
                Outcome::Error
            }
        }
    }
}

/// `value` in decimal, written into `buf` without allocating.
fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

weft_sdk::export_filter!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        let mut buf = [0; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(7, &mut buf), b"7");
        assert_eq!(decimal(1200, &mut buf), b"1200");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }
}
