//! Choosing an endpoint for a request.
//!
//! A [`Balancer`] is built once per endpoint set (at a reload or a discovery update) and then
//! picks without locks or allocation: a precomputed smooth weighted round-robin schedule, a
//! cumulative weight table for weighted random, power of two choices over outstanding
//! requests × peak-EWMA latency, or a consistent-hash ring.
//!
//! Every pick prefers, in order: endpoints that are available (not ejected, passing health
//! checks) and ready; available but terminating ones; and, when nothing is available, all of
//! them (Envoy's "panic mode": better to try a doubtful endpoint than to fail every request).
//! One endpoint may be excluded — the one the previous try failed on — unless it is the only
//! one.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::clock;
use crate::endpoint::EndpointState;
use crate::policy::LoadBalancer;

/// The largest round-robin schedule or hash ring, whatever the weights.
const MAX_SCHEDULE: u64 = 8192;
const RING_PER_ENDPOINT: usize = 160;
const MAX_RING: usize = 1 << 16;

#[derive(Debug)]
enum Kind {
    /// Equal weights: `next % n`.
    Cycle,
    /// Smooth weighted round robin, unrolled.
    Schedule(Box<[u32]>),
    LeastRequest,
    /// Cumulative weights, for weighted random.
    Random(Box<[u64]>),
    /// Sorted `(point, endpoint)`; requests without a key use `fallback`.
    Ring {
        ring: Box<[(u64, u32)]>,
        fallback: Box<Kind>,
    },
}

/// Picks endpoints of one set; see the module docs.
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer for `endpoints` (their keys and weights) with the policy's algorithm.
    pub fn new(lb: &LoadBalancer, endpoints: &[&EndpointState]) -> Self {
        let kind = match lb {
            LoadBalancer::RoundRobin => round_robin(endpoints),
            LoadBalancer::LeastRequest => Kind::LeastRequest,
            LoadBalancer::Random => {
                let mut sum = 0u64;
                Kind::Random(
                    endpoints
                        .iter()
                        .map(|e| {
                            sum += u64::from(e.weight());
                            sum
                        })
                        .collect(),
                )
            }
            LoadBalancer::ConsistentHash(_) => Kind::Ring {
                ring: ring(endpoints),
                fallback: Box::new(round_robin(endpoints)),
            },
        };
        Self {
            kind,
            // Sets built at the same moment should not all start on their first endpoint.
            next: AtomicUsize::new(usize::try_from(getrandom::u32().unwrap_or(0)).unwrap_or(0)),
        }
    }

    /// The index of the endpoint for a request: `hash` is the request's consistent-hash key
    /// (see [`hash_key`]), `exclude` the endpoint its previous try failed on. None only when
    /// `endpoints` is empty.
    pub fn pick<E: AsRef<EndpointState>>(
        &self,
        endpoints: &[E],
        hash: Option<u64>,
        exclude: Option<usize>,
    ) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        if endpoints.len() == 1 {
            return Some(0);
        }
        let now = clock::now_ms();
        let state = |i: usize| endpoints[i].as_ref();
        let tiers: [&dyn Fn(usize) -> bool; 4] = [
            &|i| Some(i) != exclude && state(i).ready() && state(i).available(now),
            &|i| Some(i) != exclude && state(i).available(now),
            &|i| Some(i) != exclude,
            &|_| true,
        ];
        // One turn of the round-robin counter per pick, whichever tier serves it.
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        for ok in tiers {
            if let Some(i) = pick_in(&self.kind, turn, endpoints, hash, ok) {
                return Some(i);
            }
        }
        None
    }
}

fn pick_in<E: AsRef<EndpointState>>(
    kind: &Kind,
    turn: usize,
    endpoints: &[E],
    hash: Option<u64>,
    ok: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let n = endpoints.len();
    match kind {
        Kind::Cycle => (0..n).map(|k| (turn + k) % n).find(|i| ok(*i)),
        Kind::Schedule(schedule) => {
            let len = schedule.len();
            (0..len)
                .map(|k| schedule[(turn + k) % len] as usize)
                .find(|i| *i < n && ok(*i))
        }
        Kind::Random(cumulative) => {
            let total = *cumulative.last()?;
            let r = random() % total.max(1);
            let first = cumulative.partition_point(|c| *c <= r).min(n - 1);
            (0..n).map(|k| (first + k) % n).find(|i| ok(*i))
        }
        Kind::LeastRequest => {
            let now = clock::now_ns();
            let a = usize::try_from(random() % n as u64).unwrap_or(0);
            let b = (a + 1 + usize::try_from(random() % (n as u64 - 1)).unwrap_or(0)) % n;
            match (ok(a), ok(b)) {
                (true, true) => {
                    let (la, lb) = (
                        endpoints[a].as_ref().load(now),
                        endpoints[b].as_ref().load(now),
                    );
                    Some(if lb < la { b } else { a })
                }
                (true, false) => Some(a),
                (false, true) => Some(b),
                // Few endpoints pass: the least loaded of those that do.
                (false, false) => (0..n).filter(|i| ok(*i)).min_by(|x, y| {
                    endpoints[*x]
                        .as_ref()
                        .load(now)
                        .total_cmp(&endpoints[*y].as_ref().load(now))
                }),
            }
        }
        Kind::Ring { ring, fallback } => match hash {
            None => pick_in(fallback, turn, endpoints, None, ok),
            Some(h) => {
                if ring.is_empty() {
                    return None;
                }
                let start = ring.partition_point(|(point, _)| *point < h);
                (0..ring.len())
                    .map(|k| ring[(start + k) % ring.len()].1 as usize)
                    .find(|i| *i < n && ok(*i))
            }
        },
    }
}

fn random() -> u64 {
    getrandom::u64().unwrap_or(0)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's smooth weighted round robin, unrolled into a schedule: weights 5:1:1 give
/// a a b a c a a, never five a's in a row.
fn round_robin(endpoints: &[&EndpointState]) -> Kind {
    let weights: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight())).collect();
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Kind::Cycle;
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            *w = (*w * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(u32::try_from(best).unwrap_or(0));
    }
    Kind::Schedule(schedule.into())
}

/// A ring with points per endpoint in proportion to its weight, placed by hashing
/// `key#i`: where an endpoint sits does not depend on the others, so one leaving moves only
/// its own keys.
fn ring(endpoints: &[&EndpointState]) -> Box<[(u64, u32)]> {
    let total: u64 = endpoints.iter().map(|e| u64::from(e.weight())).sum();
    let size = (endpoints.len() * RING_PER_ENDPOINT).clamp(1, MAX_RING) as u64;
    let mut ring = Vec::with_capacity(usize::try_from(size).unwrap_or(0) + endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        let points = (u64::from(e.weight()) * size / total.max(1)).max(1);
        for p in 0..points {
            let mut bytes = Vec::with_capacity(e.key().len() + 8);
            bytes.extend_from_slice(e.key().as_bytes());
            bytes.push(b'#');
            bytes.extend_from_slice(p.to_string().as_bytes());
            ring.push((hash_key(&bytes), u32::try_from(i).unwrap_or(u32::MAX)));
        }
    }
    ring.sort_unstable();
    ring.into()
}

/// The stable 64-bit hash of a consistent-hash key (FNV-1a, then a finalizer that spreads
/// short keys over the whole ring). The same on every proxy and every run.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finalizer.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::policy::{HashOn, OutlierDetection};

    fn set(weights: &[u32]) -> Vec<Arc<EndpointState>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(EndpointState::new(
                    &format!("10.0.0.{i}:80"),
                    *w,
                    true,
                    false,
                ))
            })
            .collect()
    }

    fn balancer(lb: &LoadBalancer, endpoints: &[Arc<EndpointState>]) -> Balancer {
        let refs: Vec<&EndpointState> = endpoints.iter().map(|e| &**e).collect();
        Balancer::new(lb, &refs)
    }

    fn counts(b: &Balancer, endpoints: &[Arc<EndpointState>], n: usize) -> Vec<usize> {
        let mut counts = vec![0; endpoints.len()];
        for _ in 0..n {
            counts[b.pick(endpoints, None, None).expect("an endpoint")] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_the_weights_smoothly() {
        let endpoints = set(&[5, 1, 1]);
        let b = balancer(&LoadBalancer::RoundRobin, &endpoints);
        assert_eq!(counts(&b, &endpoints, 700), vec![500, 100, 100]);
        let Kind::Schedule(schedule) = &b.kind else {
            panic!("weighted")
        };
        // Never five of the heavy one in a row.
        assert!(
            schedule.windows(4).all(|w| w.iter().any(|i| *i != 0)),
            "{schedule:?}"
        );
        let equal = set(&[1, 1, 1]);
        let b = balancer(&LoadBalancer::RoundRobin, &equal);
        assert_eq!(counts(&b, &equal, 300), vec![100, 100, 100]);
    }

    #[test]
    fn random_follows_the_weights() {
        let endpoints = set(&[1, 3]);
        let b = balancer(&LoadBalancer::Random, &endpoints);
        let c = counts(&b, &endpoints, 20_000);
        assert!((4_500..5_500).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_and_the_slow() {
        let endpoints = set(&[1, 1, 1]);
        let b = balancer(&LoadBalancer::LeastRequest, &endpoints);
        let _busy: Vec<_> = (0..20).map(|_| endpoints[0].start()).collect();
        let c = counts(&b, &endpoints, 3_000);
        // Endpoint 0 wins only when both choices land on it, which they never do.
        assert_eq!(c[0], 0, "{c:?}");

        let endpoints = set(&[1, 1]);
        let b = balancer(&LoadBalancer::LeastRequest, &endpoints);
        endpoints[0].record(
            crate::endpoint::Outcome::Success,
            Duration::from_millis(50),
            None,
        );
        endpoints[1].record(
            crate::endpoint::Outcome::Success,
            Duration::from_micros(500),
            None,
        );
        let c = counts(&b, &endpoints, 1_000);
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[test]
    fn a_hash_keeps_keys_and_moves_only_the_leavers() {
        let endpoints = set(&[1, 1, 1, 1, 1]);
        let lb = LoadBalancer::ConsistentHash(HashOn::Cookie("s".into()));
        let b = balancer(&lb, &endpoints);
        let keys: Vec<u64> = (0..2_000)
            .map(|k| hash_key(format!("user-{k}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| b.pick(&endpoints, Some(*k), None).expect("some"))
            .collect();
        for (k, i) in keys.iter().zip(&before) {
            assert_eq!(b.pick(&endpoints, Some(*k), None), Some(*i), "stable");
        }
        let per: HashMap<usize, usize> = before.iter().fold(HashMap::new(), |mut m, i| {
            *m.entry(*i).or_default() += 1;
            m
        });
        assert!(per.values().all(|n| (250..550).contains(n)), "{per:?}");

        // Endpoint 2 leaves: the new set has the others at the same keys (indices shift).
        let remaining: Vec<Arc<EndpointState>> = endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, e)| e.clone())
            .collect();
        let after = balancer(&lb, &remaining);
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(k, i)| {
                let now = after.pick(&remaining, Some(**k), None).expect("some");
                remaining[now].key() != endpoints[**i].key()
            })
            .count();
        let on_leaver = before.iter().filter(|i| **i == 2).count();
        assert_eq!(moved, on_leaver, "only the leaver's keys move");
    }

    #[test]
    fn skips_ejected_and_excluded_but_never_fails() {
        let endpoints = set(&[1, 1, 1]);
        let outlier = OutlierDetection::default();
        let b = balancer(&LoadBalancer::RoundRobin, &endpoints);
        endpoints[1].eject(&outlier, clock::now_ms());
        let c = counts(&b, &endpoints, 300);
        assert_eq!(c[1], 0, "{c:?}");
        for _ in 0..10 {
            assert_ne!(b.pick(&endpoints, None, Some(0)), Some(0));
        }
        // Everything out: panic mode uses them all.
        endpoints[0].eject(&outlier, clock::now_ms());
        endpoints[2].eject(&outlier, clock::now_ms());
        let c = counts(&b, &endpoints, 300);
        assert_eq!(c, vec![100, 100, 100]);
        // Terminating endpoints only when nothing ready is left.
        let mixed = vec![
            Arc::new(EndpointState::new("a:1", 1, true, false)),
            Arc::new(EndpointState::new("b:1", 1, false, false)),
        ];
        let b = balancer(&LoadBalancer::LeastRequest, &mixed);
        assert_eq!(counts(&b, &mixed, 100), vec![100, 0]);
    }

    #[test]
    fn ejection_respects_the_share() {
        let endpoints = set(&[1, 1, 1, 1]);
        let outlier = OutlierDetection {
            consecutive_failures: 2,
            max_ejection_percent: 50,
            ..OutlierDetection::default()
        };
        let now = clock::now_ms();
        let fail = |e: &EndpointState| {
            e.record(
                crate::endpoint::Outcome::ServerError,
                Duration::ZERO,
                Some(&outlier),
            )
        };
        assert!(!fail(&endpoints[0]));
        assert!(fail(&endpoints[0]));
        let states = || endpoints.iter().map(|e| &**e);
        assert!(crate::endpoint::may_eject(states(), &outlier, now));
        assert_eq!(endpoints[0].eject(&outlier, now), Duration::from_secs(30));
        endpoints[1].eject(&outlier, now);
        assert!(
            !crate::endpoint::may_eject(states(), &outlier, now),
            "50% are out"
        );
        // Back after the ejection time; the next ejection lasts twice as long.
        assert!(!endpoints[0].ejected(now + 30_001));
        assert_eq!(
            endpoints[0].eject(&outlier, now + 30_001),
            Duration::from_secs(60)
        );
    }
}
