//! From each limit's outcome to the request's fate: allowed (with the quota to advertise) or
//! limited (with the 429 to send).

use std::time::Duration;

use weft_sdk::LocalResponse;

use crate::config::{OnKeyOverflow, Plan};

/// What one limit said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key could not be built (a header is absent): the limit does not apply.
    Skipped,
    /// The tokens were taken.
    Allowed(Bucket),
    /// Not enough tokens; nothing was taken.
    Limited(Bucket),
    /// The key is new and the limit already holds `max_keys` keys.
    Overflow,
    /// The host did not know the family (a bug); the limit is not applied.
    Error,
}

/// A bucket's state after a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens left.
    pub remaining: u64,
    /// When limited: how long until the cost is available.
    pub retry_after: Duration,
    /// How long until the bucket is full.
    pub reset_after: Duration,
}

impl Outcome {
    /// The `decision` label of the `ratelimit_decisions` counter.
    pub fn label(self, shadow: bool) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::Allowed(_) => "allowed",
            Outcome::Limited(_) if shadow => "shadow_limited",
            Outcome::Limited(_) => "limited",
            Outcome::Overflow => "overflow",
            Outcome::Error => "error",
        }
    }
}

/// The quota advertised in the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `x-ratelimit-limit`: the bucket's capacity.
    pub limit: u64,
    /// `x-ratelimit-remaining`: tokens left.
    pub remaining: u64,
    /// `x-ratelimit-reset`: whole seconds (rounded up) until the bucket is full again.
    pub reset: u64,
}

impl Quota {
    /// The three headers, names and values.
    pub fn headers(self) -> [(&'static str, u64); 3] {
        [
            ("x-ratelimit-limit", self.limit),
            ("x-ratelimit-remaining", self.remaining),
            ("x-ratelimit-reset", self.reset),
        ]
    }
}

/// The request's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through; advertise this quota (the most restrictive limit's) when asked to.
    Allow(Option<Quota>),
    /// Answer 429.
    Deny(Denial),
}

/// Why and how a request is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// The index of the limit that decided.
    pub limit: usize,
    /// `retry-after`: whole seconds, rounded up, at least 1.
    pub retry_after: u64,
    /// The limit's quota; none when the key did not fit (`on_key_overflow: deny`).
    pub quota: Option<Quota>,
}

/// Combine the outcomes of every limit (in `plan.limits` order) into a verdict.
///
/// Limited if any limit said no (never in shadow mode); the 429 speaks for the denying limit
/// with the longest wait, since the client must wait for all of them. Allowed responses
/// advertise the limit closest to running out: the fewest requests left (`remaining / cost`),
/// then the longest time to reset.
pub fn decide(plan: &Plan, outcomes: &[Outcome]) -> Verdict {
    let mut tightest: Option<(usize, Bucket)> = None;
    let mut denied: Option<(usize, Bucket)> = None;
    let mut overflowed: Option<usize> = None;
    for (i, (limit, outcome)) in plan.limits.iter().zip(outcomes).enumerate() {
        let bucket = match *outcome {
            Outcome::Allowed(bucket) => bucket,
            Outcome::Limited(bucket) => {
                if !plan.shadow && denied.is_none_or(|(_, d)| bucket.retry_after > d.retry_after) {
                    denied = Some((i, bucket));
                }
                bucket
            }
            Outcome::Overflow => {
                if overflowed.is_none() {
                    overflowed = Some(i);
                }
                continue;
            }
            Outcome::Skipped | Outcome::Error => continue,
        };
        let tighter = tightest.is_none_or(|(t, tb)| {
            let left = bucket.remaining / limit.cost;
            let tight_left = tb.remaining / plan.limits[t].cost;
            left < tight_left || (left == tight_left && bucket.reset_after > tb.reset_after)
        });
        if tighter {
            tightest = Some((i, bucket));
        }
    }
    let quota = |(i, bucket): (usize, Bucket)| Quota {
        limit: plan.limits[i].capacity,
        remaining: bucket.remaining,
        reset: ceil_secs(bucket.reset_after),
    };
    if let Some((i, bucket)) = denied {
        return Verdict::Deny(Denial {
            limit: i,
            retry_after: ceil_secs(bucket.retry_after).max(1),
            quota: Some(quota((i, bucket))),
        });
    }
    if let Some(i) = overflowed
        && !plan.shadow
        && plan.on_key_overflow == OnKeyOverflow::Deny
    {
        // No bucket, so no wait to report; one refill interval is when buckets start to be
        // forgotten and room may appear.
        return Verdict::Deny(Denial {
            limit: i,
            retry_after: ceil_secs(plan.limits[i].interval).max(1),
            quota: None,
        });
    }
    Verdict::Allow(tightest.filter(|_| plan.headers_on_allowed).map(quota))
}

/// Whole seconds, rounded up.
pub fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The 429 for `denial`.
pub fn response(plan: &Plan, denial: &Denial) -> LocalResponse {
    let name = &plan.limits[denial.limit].name;
    let mut response = LocalResponse::new(429)
        .header("content-type", "text/plain; charset=utf-8")
        .header("retry-after", denial.retry_after.to_string());
    let body = match denial.quota {
        Some(quota) => {
            for (header, value) in quota.headers() {
                response = response.header(header, value.to_string());
            }
            format!("rate limit exceeded: {name}\n")
        }
        None => format!("rate limit exceeded: {name} (too many distinct keys)\n"),
    };
    response.body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Plan};

    fn plan(shadow: bool, headers: bool, overflow: &str, limits: &[(&str, u64, u64)]) -> Plan {
        let limits: Vec<_> = limits
            .iter()
            .map(|(name, capacity, cost)| {
                serde_json::json!({
                    "name": name,
                    "key": [],
                    "capacity": capacity,
                    "cost": cost,
                    "refill": { "amount": 1, "interval": "1500ms" },
                })
            })
            .collect();
        let config: Config = serde_json::from_value(serde_json::json!({
            "limits": limits,
            "shadow": shadow,
            "headers": headers,
            "on_key_overflow": overflow,
        }))
        .expect("valid config");
        Plan::new(config).expect("valid plan")
    }

    fn bucket(remaining: u64, retry_ms: u64, reset_ms: u64) -> Bucket {
        Bucket {
            remaining,
            retry_after: Duration::from_millis(retry_ms),
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn allowed_advertises_the_fewest_requests_left() {
        let plan = plan(
            false,
            true,
            "allow",
            &[("a", 100, 1), ("b", 10, 1), ("c", 100, 10)],
        );
        let outcomes = [
            Outcome::Allowed(bucket(50, 0, 5_000)),
            Outcome::Allowed(bucket(9, 0, 1_500)),
            Outcome::Allowed(bucket(80, 0, 3_000)),
        ];
        // c has 80 tokens but only 8 requests left at cost 10.
        assert_eq!(
            decide(&plan, &outcomes),
            Verdict::Allow(Some(Quota {
                limit: 100,
                remaining: 80,
                reset: 3
            }))
        );
        // Ties go to the longer reset.
        let outcomes = [
            Outcome::Allowed(bucket(5, 0, 1_000)),
            Outcome::Allowed(bucket(5, 0, 2_001)),
            Outcome::Skipped,
        ];
        assert_eq!(
            decide(&plan, &outcomes),
            Verdict::Allow(Some(Quota {
                limit: 10,
                remaining: 5,
                reset: 3
            }))
        );
    }

    #[test]
    fn no_headers_when_disabled_or_no_limit_applied() {
        let quiet = plan(false, false, "allow", &[("a", 10, 1)]);
        let outcomes = [Outcome::Allowed(bucket(5, 0, 1_000))];
        assert_eq!(decide(&quiet, &outcomes), Verdict::Allow(None));
        let loud = plan(false, true, "allow", &[("a", 10, 1)]);
        assert_eq!(decide(&loud, &[Outcome::Skipped]), Verdict::Allow(None));
        assert_eq!(decide(&loud, &[Outcome::Overflow]), Verdict::Allow(None));
        assert_eq!(decide(&loud, &[Outcome::Error]), Verdict::Allow(None));
    }

    #[test]
    fn denial_speaks_for_the_longest_wait() {
        let plan = plan(
            false,
            false,
            "allow",
            &[("a", 10, 1), ("b", 20, 1), ("c", 30, 1)],
        );
        let outcomes = [
            Outcome::Limited(bucket(0, 500, 9_000)),
            Outcome::Allowed(bucket(3, 0, 100)),
            Outcome::Limited(bucket(0, 2_500, 4_000)),
        ];
        let Verdict::Deny(denial) = decide(&plan, &outcomes) else {
            panic!("must deny");
        };
        assert_eq!(
            denial,
            Denial {
                limit: 2,
                retry_after: 3,
                quota: Some(Quota {
                    limit: 30,
                    remaining: 0,
                    reset: 4
                }),
            }
        );
        let response = response(&plan, &denial);
        assert_eq!(response.status, 429);
        assert_eq!(response.body, b"rate limit exceeded: c\n");
        let headers: Vec<(&str, &[u8])> = response
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            headers,
            [
                ("content-type", b"text/plain; charset=utf-8".as_slice()),
                ("retry-after", b"3"),
                ("x-ratelimit-limit", b"30"),
                ("x-ratelimit-remaining", b"0"),
                ("x-ratelimit-reset", b"4"),
            ]
        );
    }

    #[test]
    fn shadow_never_denies_but_labels_it() {
        let plan = plan(true, true, "deny", &[("a", 10, 1), ("b", 10, 1)]);
        let outcomes = [Outcome::Limited(bucket(0, 500, 9_000)), Outcome::Overflow];
        assert_eq!(
            decide(&plan, &outcomes),
            Verdict::Allow(Some(Quota {
                limit: 10,
                remaining: 0,
                reset: 9
            }))
        );
        assert_eq!(outcomes[0].label(true), "shadow_limited");
        assert_eq!(outcomes[0].label(false), "limited");
        assert_eq!(outcomes[1].label(true), "overflow");
    }

    #[test]
    fn overflow_follows_the_policy() {
        let outcomes = [Outcome::Allowed(bucket(5, 0, 0)), Outcome::Overflow];
        let allow = plan(false, true, "allow", &[("a", 10, 1), ("b", 10, 1)]);
        assert!(matches!(decide(&allow, &outcomes), Verdict::Allow(Some(_))));
        let deny = plan(false, true, "deny", &[("a", 10, 1), ("b", 10, 1)]);
        let Verdict::Deny(denial) = decide(&deny, &outcomes) else {
            panic!("must deny");
        };
        // The interval is 1.5 s: two whole seconds.
        assert_eq!(
            denial,
            Denial {
                limit: 1,
                retry_after: 2,
                quota: None
            }
        );
        let response = response(&deny, &denial);
        assert_eq!(
            response.body,
            b"rate limit exceeded: b (too many distinct keys)\n"
        );
        assert!(
            !response
                .headers
                .iter()
                .any(|(n, _)| n.starts_with("x-ratelimit")),
            "no quota to tell"
        );
        // A limit that counted tokens wins over an overflow for the 429.
        let outcomes = [Outcome::Limited(bucket(0, 100, 100)), Outcome::Overflow];
        let Verdict::Deny(denial) = decide(&deny, &outcomes) else {
            panic!("must deny");
        };
        assert_eq!(denial.limit, 0);
    }
}
