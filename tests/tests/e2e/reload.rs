//! Standalone hot reload: the proxy watches its own config file (and the module files it
//! names) and applies changes to filters, routes and upstreams without a restart; a change
//! that does not load is reported and changes nothing.

use std::time::Duration;

use weft_tests::{Upstream, guests, scrape, start_proxy};

use crate::{filter, greeting, one_route};

const UPDATES: &str = "weft_config_updates_total";

fn greeting_config(upstream: std::net::SocketAddr, greeting: &str) -> String {
    one_route(
        upstream,
        &[filter(
            "greet",
            guests::CONFIG_ECHO,
            &format!("config: {{ greeting: {greeting:?} }}"),
        )],
    )
}

/// Write `contents` the way editors and config management do: a new file renamed over the old.
fn replace_file(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("writing the new config");
    std::fs::rename(&tmp, path).expect("renaming the new config into place");
}

/// Poll `check` every 10 ms until it returns true; fail after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn editing_the_config_file_reloads_the_filter_chain() {
    let upstream = Upstream::start().await.expect("upstream");
    let proxy = start_proxy(&greeting_config(upstream.addr(), "v1"))
        .await
        .expect("proxy");
    assert_eq!(greeting(proxy.addr()).await, "v1");

    // The listener keeps its port 0 in the file; the proxy keeps the port it bound.
    replace_file(proxy.config_path(), &greeting_config(upstream.addr(), "v2"));
    eventually(Duration::from_secs(5), "the new greeting", || async {
        greeting(proxy.addr()).await == "v2"
    })
    .await;
    let metrics = scrape(proxy.admin()).await.expect("metrics");
    assert_eq!(
        metrics.value(UPDATES, &[("source", "file"), ("result", "applied")]),
        Some(1.0),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn a_bad_config_file_change_is_rejected_and_the_old_chain_keeps_serving() {
    let upstream = Upstream::start().await.expect("upstream");
    let proxy = start_proxy(&greeting_config(upstream.addr(), "v1"))
        .await
        .expect("proxy");

    // The filter's configure rejects an empty greeting: the watcher counts a rejection...
    replace_file(proxy.config_path(), &greeting_config(upstream.addr(), ""));
    eventually(Duration::from_secs(5), "the rejected reload", || async {
        scrape(proxy.admin())
            .await
            .ok()
            .and_then(|m| m.value(UPDATES, &[("source", "file"), ("result", "rejected")]))
            .is_some()
    })
    .await;
    assert_eq!(greeting(proxy.addr()).await, "v1", "the old chain serves");
    // ...and an explicit reload says why, naming the filter.
    let error = proxy
        .reload()
        .await
        .expect_err("an empty greeting is rejected");
    let message = error.to_string();
    assert!(
        message.contains("filter \"greet\"") && message.contains("greeting must not be empty"),
        "{message}"
    );

    // A YAML error names the file, line and field.
    let broken = greeting_config(upstream.addr(), "v3").replace("upstream: app", "upstream: nope");
    replace_file(proxy.config_path(), &broken);
    let message = proxy
        .reload()
        .await
        .expect_err("unknown upstream")
        .to_string();
    assert!(
        message.contains("weft.yaml:") && message.contains("unknown upstream \"nope\""),
        "{message}"
    );

    // What needs new sockets cannot change in place, and the error says to restart.
    let moved = greeting_config(upstream.addr(), "v3").replace(
        "address: 127.0.0.1:0\n    direction",
        "address: 127.0.0.1:1\n    direction",
    );
    replace_file(proxy.config_path(), &moved);
    let message = proxy
        .reload()
        .await
        .expect_err("listener moved")
        .to_string();
    assert!(message.contains("restart the proxy"), "{message}");
    assert_eq!(greeting(proxy.addr()).await, "v1", "still the old chain");

    // So do a listener's path normalization, TLS mode and identity header: they are fixed
    // while it runs, and a reload that changes them is refused rather than half applied.
    let renormalized = greeting_config(upstream.addr(), "v3").replace(
        "    direction: inbound\n",
        "    direction: inbound\n    paths: { merge_slashes: false }\n",
    );
    assert_ne!(renormalized, greeting_config(upstream.addr(), "v3"));
    replace_file(proxy.config_path(), &renormalized);
    let message = proxy.reload().await.expect_err("paths changed").to_string();
    assert!(
        message.contains("listeners (paths, tls or peer_identity_header)"),
        "{message}"
    );
    assert_eq!(greeting(proxy.addr()).await, "v1", "still the old chain");

    // A good file applies again.
    replace_file(proxy.config_path(), &greeting_config(upstream.addr(), "v4"));
    proxy.reload().await.expect("a valid config reloads");
    assert_eq!(greeting(proxy.addr()).await, "v4");
}
