//! Load balancing over an upstream's endpoints: least-request against round robin with a slow
//! endpoint, weights, consistent hashing (and what moves when an endpoint leaves), subsets
//! and weighted splits; and the balancing settings a config must not be allowed to have.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use weft_tests::{
    Behaviour, ScriptedUpstream, UPSTREAM_HEADER, get, one_upstream_config, start_proxy, tally,
    wait_for,
};

use crate::resilience::{assert_refused, endpoint};

/// The share of `upstream` in `counts` (from [`tally`]).
fn share(counts: &BTreeMap<String, usize>, upstream: &ScriptedUpstream) -> f64 {
    let total: usize = counts.values().sum();
    counts.get(upstream.name()).copied().unwrap_or(0) as f64 / total.max(1) as f64
}

/// `{address: ..., <fields>}` as an item of an `endpoints:` list.
fn endpoint_with(upstream: &ScriptedUpstream, fields: &str) -> String {
    format!("{{address: \"{}\", {fields}}}", upstream.addr())
}

/// The share of requests a slow endpoint (50 ms) gets beside a fast one under `load_balancer`,
/// 16 requests at a time.
async fn slow_share(load_balancer: &str) -> anyhow::Result<f64> {
    let slow = ScriptedUpstream::start(Behaviour::Delay(Duration::from_millis(50))).await?;
    let fast = ScriptedUpstream::start(Behaviour::Ok).await?;
    let lb = format!("load_balancer: {load_balancer}");
    let proxy = start_proxy(&one_upstream_config(
        &["upstream: app"],
        &[endpoint(&slow), endpoint(&fast)],
        &[&lb, "retries: {attempts: 0}"],
    ))
    .await?;
    let counts = tally(proxy.addr(), 240, 16, &[]).await?;
    Ok(share(&counts, &slow))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_less_to_a_slow_endpoint_than_round_robin() -> anyhow::Result<()> {
    let round_robin = slow_share("round_robin").await?;
    let least_request = slow_share("least_request").await?;
    assert!(
        (0.45..=0.55).contains(&round_robin),
        "round robin gave the slow endpoint {round_robin:.2} of the requests, not half"
    );
    assert!(
        least_request < 0.3 && least_request < round_robin - 0.2,
        "least_request gave the slow endpoint {least_request:.2} of the requests (round robin: {round_robin:.2})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_set_each_endpoints_share() -> anyhow::Result<()> {
    // (load balancer, requests, allowed deviation from 3/4)
    for (lb, requests, tolerance) in [("round_robin", 400, 0.02), ("random", 1000, 0.05)] {
        let light = ScriptedUpstream::start(Behaviour::Ok).await?;
        let heavy = ScriptedUpstream::start(Behaviour::Ok).await?;
        let lb_line = format!("load_balancer: {lb}");
        let proxy = start_proxy(&one_upstream_config(
            &["upstream: app"],
            &[endpoint(&light), endpoint_with(&heavy, "weight: 3")],
            &[&lb_line],
        ))
        .await?;
        let counts = tally(proxy.addr(), requests, 8, &[]).await?;
        let heavy_share = share(&counts, &heavy);
        assert!(
            (heavy_share - 0.75).abs() <= tolerance,
            "{lb}: the endpoint of weight 3 (the other's is 1 by default) got {heavy_share:.3} of {requests}"
        );
        assert_eq!(
            light.requests() + heavy.requests(),
            requests,
            "{lb}: {counts:?}"
        );
    }
    Ok(())
}

/// Which endpoint each of `keys` lands on through the proxy at `addr`, asking `rounds` times
/// per key, with the key sent as `header: <prefix><key>`; fails if a key lands on two.
async fn placement(
    addr: SocketAddr,
    header: &str,
    prefix: &str,
    keys: &[String],
    rounds: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut placed = BTreeMap::new();
    for _ in 0..rounds {
        for key in keys {
            let value = format!("{prefix}{key}");
            let reply = get(addr, "/", &[(header, &value)]).await?;
            anyhow::ensure!(reply.status == 200, "{key}: {}", reply.status);
            let at = reply.header(UPSTREAM_HEADER).unwrap_or("<none>").to_owned();
            if let Some(before) = placed.insert(key.clone(), at.clone()) {
                anyhow::ensure!(before == at, "key {key} went to {before}, then to {at}");
            }
        }
    }
    Ok(placed)
}

fn hash_config(upstreams: &[&ScriptedUpstream], hash_on: &str) -> String {
    let endpoints: Vec<String> = upstreams.iter().map(|u| endpoint(u)).collect();
    let lb = format!("load_balancer: {{consistent_hash: {{{hash_on}}}}}");
    one_upstream_config(&["upstream: app"], &endpoints, &[&lb])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_keeps_each_key_on_one_endpoint_and_moves_few_when_one_leaves()
-> anyhow::Result<()> {
    let upstreams = [
        ScriptedUpstream::start(Behaviour::Ok).await?,
        ScriptedUpstream::start(Behaviour::Ok).await?,
        ScriptedUpstream::start(Behaviour::Ok).await?,
    ];
    let [a, b, leaving] = &upstreams;
    let proxy = start_proxy(&hash_config(&[a, b, leaving], "header: x-user")).await?;
    let keys: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let before = placement(proxy.addr(), "x-user", "", &keys, 3).await?;
    for upstream in &upstreams {
        let held = before.values().filter(|at| *at == upstream.name()).count();
        assert!(
            held >= 5,
            "{} holds {held} of 60 keys: the hash does not spread them",
            upstream.name()
        );
    }

    // Reload without the third endpoint.
    let path = proxy.config_path();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, hash_config(&[a, b], "header: x-user"))?;
    std::fs::rename(&tmp, path)?;
    proxy.reload().await?;
    let gone = leaving.requests();
    let after = placement(proxy.addr(), "x-user", "", &keys, 2).await?;
    assert_eq!(
        leaving.requests(),
        gone,
        "the removed endpoint still gets traffic"
    );

    let stayed: Vec<&String> = keys
        .iter()
        .filter(|k| before[*k] != leaving.name())
        .collect();
    let moved = stayed.iter().filter(|k| before[**k] != after[**k]).count();
    assert!(
        moved * 10 <= stayed.len(),
        "{moved} of the {} keys not on the removed endpoint moved",
        stayed.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_on_a_cookie_keeps_each_session_on_one_endpoint() -> anyhow::Result<()> {
    let upstreams = [
        ScriptedUpstream::start(Behaviour::Ok).await?,
        ScriptedUpstream::start(Behaviour::Ok).await?,
        ScriptedUpstream::start(Behaviour::Ok).await?,
    ];
    let [a, b, c] = &upstreams;
    let proxy = start_proxy(&hash_config(&[a, b, c], "cookie: session")).await?;
    let keys: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    let placed = placement(proxy.addr(), "cookie", "theme=dark; session=", &keys, 3).await?;
    let used: std::collections::BTreeSet<&String> = placed.values().collect();
    assert!(used.len() >= 2, "30 sessions all on {used:?}");
    Ok(())
}

/// Endpoints `v1` and `v2` labelled `version: v1` / `v2`, subsets of the same names, and the
/// route lines `route`.
fn versioned_config(v1: &ScriptedUpstream, v2: &ScriptedUpstream, route: &[&str]) -> String {
    one_upstream_config(
        route,
        &[
            endpoint_with(v1, "labels: {version: v1}"),
            endpoint_with(v2, "labels: {version: v2}"),
        ],
        &["subsets: {v1: {version: v1}, v2: {version: v2}}"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_over_subsets_lands_within_a_few_percent() -> anyhow::Result<()> {
    const REQUESTS: usize = 1000;
    let v1 = ScriptedUpstream::start(Behaviour::Ok).await?;
    let v2 = ScriptedUpstream::start(Behaviour::Ok).await?;
    let proxy = start_proxy(&versioned_config(
        &v1,
        &v2,
        &[
            "split:",
            "  - {upstream: app, subset: v1, weight: 90}",
            "  - {upstream: app, subset: v2, weight: 10}",
        ],
    ))
    .await?;
    let counts = tally(proxy.addr(), REQUESTS, 8, &[]).await?;
    let v2_share = share(&counts, &v2);
    assert!(
        (v2_share - 0.10).abs() <= 0.035,
        "v2 got {v2_share:.3} of {REQUESTS} requests, not 10%: {counts:?}"
    );
    assert_eq!(v1.requests() + v2.requests(), REQUESTS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_a_subset_reaches_only_its_endpoints() -> anyhow::Result<()> {
    let v1 = ScriptedUpstream::start(Behaviour::Ok).await?;
    let v2 = ScriptedUpstream::start(Behaviour::Ok).await?;
    let proxy = start_proxy(&versioned_config(&v1, &v2, &["upstream: app@v2"])).await?;
    let counts = tally(proxy.addr(), 20, 4, &[]).await?;
    assert_eq!(counts.get(v2.name()), Some(&20), "{counts:?}");
    assert_eq!(v1.requests(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_without_its_header_still_serves() -> anyhow::Result<()> {
    let a = ScriptedUpstream::start(Behaviour::Ok).await?;
    let b = ScriptedUpstream::start(Behaviour::Ok).await?;
    let proxy = start_proxy(&hash_config(&[&a, &b], "header: x-user")).await?;
    // No key: spread (round robin) rather than all on one endpoint.
    wait_for(Duration::from_secs(5), "both endpoints used", || async {
        let counts = tally(proxy.addr(), 10, 1, &[])
            .await
            .map_err(|e| e.to_string())?;
        if counts.len() == 2 {
            Ok(())
        } else {
            Err(format!("{counts:?}"))
        }
    })
    .await?;
    Ok(())
}

// Config mistakes.

#[test]
fn weights_of_zero_on_every_endpoint_are_refused() {
    let yaml = one_upstream_config(
        &["upstream: app"],
        &[
            "{address: \"127.0.0.1:9\", weight: 0}".to_owned(),
            "{address: \"127.0.0.1:10\", weight: 0}".to_owned(),
        ],
        &[],
    );
    assert_refused(
        &yaml,
        &["endpoints:", "127.0.0.1:9", "127.0.0.1:10"],
        &["upstreams[0].endpoints", "weight"],
    );
}

#[test]
fn an_unknown_subset_in_a_route_is_refused() {
    let yaml = one_upstream_config(
        &["upstream: app@v9"],
        &["{address: \"127.0.0.1:9\", labels: {version: v1}}".to_owned()],
        &["subsets: {v1: {version: v1}}"],
    );
    assert_refused(&yaml, &["upstream: app@v9"], &["routes[0].upstream", "v9"]);
}

#[test]
fn a_split_whose_weights_are_all_zero_is_refused() {
    let yaml = one_upstream_config(
        &[
            "split:",
            "  - {upstream: app, subset: v1, weight: 0}",
            "  - {upstream: app, subset: v2, weight: 0}",
        ],
        &[
            "{address: \"127.0.0.1:9\", labels: {version: v1}}".to_owned(),
            "{address: \"127.0.0.1:10\", labels: {version: v2}}".to_owned(),
        ],
        &["subsets: {v1: {version: v1}, v2: {version: v2}}"],
    );
    assert_refused(
        &yaml,
        &["split:", "subset: v1", "subset: v2"],
        &["routes[0].split", "weight"],
    );
}

#[test]
fn an_unknown_load_balancer_is_refused() {
    let yaml = one_upstream_config(
        &["upstream: app"],
        &["\"127.0.0.1:9\"".to_owned()],
        &["load_balancer: fastest"],
    );
    assert_refused(
        &yaml,
        &["load_balancer: fastest"],
        &["upstreams[0].load_balancer", "fastest"],
    );
}
