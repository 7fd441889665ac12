//! Active health checks: `GET path` on every endpoint of an upstream every interval.
//!
//! `unhealthy_threshold` failed checks in a row take an endpoint out; `healthy_threshold`
//! passes bring it back. A new endpoint is out until its first check passes (it is checked at
//! once). The task holds the upstream weakly and ends when the upstream is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures_util::future::join_all;
use weft_traffic::policy::HealthCheck;

use super::Upstream;

#[derive(Default, Clone, Copy)]
struct Streak {
    passes: u32,
    failures: u32,
}

pub(super) async fn run(upstream: Weak<Upstream>, check: HealthCheck) {
    let mut streaks: HashMap<Arc<str>, Streak> = HashMap::new();
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let endpoints = upstream.endpoints();
        let results = join_all(
            endpoints
                .iter()
                .map(|e| upstream.probe(e, &check.path, check.timeout)),
        )
        .await;
        let mut next = HashMap::with_capacity(endpoints.len());
        for (endpoint, passed) in endpoints.iter().zip(results) {
            let mut streak = streaks.get(&endpoint.address).copied().unwrap_or_default();
            let was_up = !endpoint.state.unhealthy();
            if passed {
                streak.passes += 1;
                streak.failures = 0;
            } else {
                streak.failures += 1;
                streak.passes = 0;
            }
            // A new endpoint comes in on its first pass; a known one after the threshold.
            let known = streaks.contains_key(&endpoint.address);
            if passed && !was_up && (!known || streak.passes >= check.healthy_threshold) {
                endpoint.state.set_healthy(true);
                tracing::info!(
                    upstream = &*upstream.name,
                    endpoint = &*endpoint.address,
                    "endpoint passes its health checks"
                );
            } else if !passed && was_up && streak.failures >= check.unhealthy_threshold {
                endpoint.state.set_healthy(false);
                tracing::warn!(
                    upstream = &*upstream.name,
                    endpoint = &*endpoint.address,
                    failures = streak.failures,
                    "endpoint fails its health checks"
                );
            }
            next.insert(endpoint.address.clone(), streak);
        }
        streaks = next;
    }
}
