//! The FilterDistribution service over real gRPC, with the generated client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use tonic::Code;
use weft_api::v1::{FetchModuleRequest, Report, SubscribeRequest, subscribe_request::Kind};
use weft_controlplane::ControlPlane;

const AUTH: &[u8] = b"\0asm auth module";
const STATS: &[u8] = b"\0asm stats module";

/// `FetchModule` for `digest` as proxy `default/<name>` with `labels`: the bytes, or the status.
async fn fetch(
    addr: std::net::SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    digest: &str,
) -> Result<(Vec<u8>, usize), tonic::Status> {
    let mut client = client(addr).await;
    let identity = hello("default", name, labels, &[]).identity;
    let mut chunks = client
        .fetch_module(FetchModuleRequest {
            identity,
            sha256: digest.to_owned(),
        })
        .await?
        .into_inner();
    let (mut bytes, mut count) = (Vec::new(), 0);
    while let Some(chunk) = chunks.message().await? {
        assert!(
            chunk.data.len() <= 64 << 10,
            "a chunk of {} bytes",
            chunk.data.len()
        );
        bytes.extend_from_slice(&chunk.data);
        count += 1;
    }
    Ok((bytes, count))
}

#[tokio::test]
async fn snapshots_name_modules_and_are_sent_only_on_change() {
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    let server = start(&cp).await;

    let mut proxy = subscribe(server.local_addr(), hello("default", "p1", &[], &[]))
        .await
        .unwrap();
    let first = proxy.next().await;
    assert_eq!(first.version, cp.version());
    assert_eq!(first.filters.len(), 1);
    assert_eq!(first.filters[0].name, "default/auth");
    assert_eq!(first.filters[0].module_sha256, digest(AUTH));
    proxy.report(first.version, true, &[]).await;

    // Same filters, new catalog version: nothing to send.
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    proxy.expect_quiet(Duration::from_millis(200)).await;

    // A changed config: a new snapshot.
    let (mut changed, module) = filter("default", "auth", AUTH);
    changed.settings.config_json = r#"{"limit":5}"#.to_owned();
    changed.generation = 2;
    cp.publish(catalog(vec![(changed, module)]));
    let second = proxy.next().await;
    assert_eq!(second.version, cp.version());
    assert_eq!(second.filters[0].config_json, r#"{"limit":5}"#);
    assert_eq!(second.filters[0].generation, 2);
    proxy.report(second.version, true, &[]).await;

    eventually("the ACK in status", || {
        cp.proxies()
            .first()
            .and_then(|p| p.last_report.clone())
            .is_some_and(|r| r.version == second.version && r.accepted)
    })
    .await;
    let status = &cp.proxies()[0];
    assert!(status.connected);
    assert_eq!(status.sent_version, second.version);
    assert_eq!(status.serving_version, second.version);
    assert_eq!(status.filters[0].name, "default/auth");
    assert_eq!(status.filters[0].generation, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn fetch_module_sends_the_bytes_in_chunks_only_to_selected_proxies() {
    let cp = ControlPlane::new("weft-system");
    // A module of 200 KiB: four chunks.
    let big: &'static [u8] = (0..200 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .leak();
    let (mut only_shop, module) = filter("default", "big", big);
    only_shop
        .settings
        .match_labels
        .insert("app".to_owned(), "shop".to_owned());
    cp.publish(catalog(vec![(only_shop, module)]));
    let server = start(&cp).await;
    let addr = server.local_addr();

    let (bytes, chunks) = fetch(addr, "p1", &[("app", "shop")], &digest(big))
        .await
        .unwrap();
    assert_eq!(bytes, big);
    assert_eq!(chunks, 4);

    // A proxy the filter does not select cannot read its module.
    let refused = fetch(addr, "p2", &[("app", "billing")], &digest(big))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    assert!(
        refused.message().contains("default/p2"),
        "{}",
        refused.message()
    );
    // Nor a digest no filter names.
    let unknown = fetch(addr, "p1", &[("app", "shop")], &digest(STATS))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn nack_is_recorded_in_status_with_its_errors() {
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    let server = start(&cp).await;

    let mut proxy = subscribe(server.local_addr(), hello("default", "p1", &[], &[]))
        .await
        .unwrap();
    let first = proxy.next().await;
    proxy
        .report(
            first.version,
            false,
            &[("default/auth", "module digest mismatch")],
        )
        .await;
    eventually("the NACK in status", || {
        cp.proxies()
            .first()
            .and_then(|p| p.last_report.clone())
            .is_some_and(|r| !r.accepted)
    })
    .await;
    let report = cp.proxies()[0].last_report.clone().unwrap();
    assert_eq!(report.version, first.version);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].filter, "default/auth");
    assert_eq!(report.errors[0].message, "module digest mismatch");
    server.shutdown().await;
}

#[tokio::test]
async fn first_message_must_be_hello_and_identity_complete() {
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![]));
    let server = start(&cp).await;
    let mut client = client(server.local_addr()).await;
    let refused = subscribe_with(
        &mut client,
        SubscribeRequest {
            kind: Some(Kind::Report(Report::default())),
        },
    )
    .await
    .err()
    .expect("a report first is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("Hello"), "{}", refused.message());

    let refused = subscribe(server.local_addr(), hello("", "p1", &[], &[]))
        .await
        .err()
        .expect("an empty namespace is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("namespace"),
        "{}",
        refused.message()
    );
    assert!(cp.proxies().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn selection_by_namespace_and_labels_over_the_wire() {
    let cp = ControlPlane::new("weft-system");
    let (mut labelled, module) = filter("default", "demo-only", STATS);
    labelled.settings.match_labels = [("app".to_owned(), "demo".to_owned())].into();
    cp.publish(catalog(vec![
        filter("default", "auth", AUTH),
        (labelled, module),
        filter("other", "elsewhere", AUTH),
        filter("weft-system", "global", AUTH),
    ]));
    let server = start(&cp).await;

    let mut plain = subscribe(server.local_addr(), hello("default", "plain", &[], &[]))
        .await
        .unwrap();
    let names: Vec<_> = plain
        .next()
        .await
        .filters
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["default/auth", "weft-system/global"]);

    let mut demo = subscribe(
        server.local_addr(),
        hello("default", "demo", &[("app", "demo")], &[]),
    )
    .await
    .unwrap();
    let names: Vec<_> = demo
        .next()
        .await
        .filters
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        ["default/auth", "default/demo-only", "weft-system/global"]
    );

    // A change to a filter that selects only `demo` reaches only `demo`.
    let (mut labelled, module) = filter("default", "demo-only", STATS);
    labelled.settings.match_labels = [("app".to_owned(), "demo".to_owned())].into();
    labelled.settings.priority = 7;
    cp.publish(catalog(vec![
        filter("default", "auth", AUTH),
        (labelled, module),
        filter("other", "elsewhere", AUTH),
        filter("weft-system", "global", AUTH),
    ]));
    assert_eq!(demo.next().await.filters[0].name, "default/demo-only");
    plain.expect_quiet(Duration::from_millis(200)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_is_kept_in_status_and_reconnect_replaces_it() {
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    let server = start(&cp).await;
    let mut proxy = subscribe(server.local_addr(), hello("default", "p1", &[], &[]))
        .await
        .unwrap();
    proxy.next().await;
    drop(proxy);
    eventually("the proxy marked disconnected", || {
        cp.proxies().first().is_some_and(|p| !p.connected)
    })
    .await;
    let mut proxy = subscribe(server.local_addr(), hello("default", "p1", &[], &[]))
        .await
        .unwrap();
    proxy.next().await;
    let all = cp.proxies();
    assert_eq!(all.len(), 1);
    assert!(all[0].connected);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    let server = start(&cp).await;
    let mut proxy = subscribe(server.local_addr(), hello("default", "p1", &[], &[]))
        .await
        .unwrap();
    proxy.next().await;
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown does not wait for proxies to hang up");
}

/// 1,000 proxies subscribed at once all get a change within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_proxies_get_a_change_within_a_second() {
    let cp = ControlPlane::new("weft-system");
    cp.publish(catalog(vec![filter("default", "auth", AUTH)]));
    let server = start(&cp).await;
    // A handful of connections, many streams each, as HTTP/2 multiplexes them.
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(client(server.local_addr()).await);
    }
    let mut proxies = Vec::new();
    for i in 0..1000 {
        let mut proxy = subscribe_with(
            &mut clients[i % 10],
            SubscribeRequest {
                kind: Some(Kind::Hello(hello("default", &format!("p{i}"), &[], &[]))),
            },
        )
        .await
        .unwrap();
        proxy.next().await;
        proxies.push(proxy);
    }
    let (mut changed, module) = filter("default", "auth", AUTH);
    changed.settings.config_json = "{}".to_owned();
    let start = std::time::Instant::now();
    cp.publish(catalog(vec![(changed, module)]));
    let mut waits = tokio::task::JoinSet::new();
    for mut proxy in proxies {
        waits.spawn(async move {
            let snapshot = proxy.next().await;
            assert_eq!(snapshot.filters[0].config_json, "{}");
            proxy
        });
    }
    let mut done = Vec::new();
    while let Some(proxy) = waits.join_next().await {
        done.push(proxy.unwrap());
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    // Server and 1,000 clients share this process, so this bounds the server's share.
    if let Some(rss_kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
    {
        eprintln!(
            "1,000 proxies: change delivered in {elapsed:?}; RSS {} MiB",
            rss_kib / 1024
        );
        assert!(rss_kib < 100 * 1024, "RSS {rss_kib} KiB");
    }
    server.shutdown().await;
}
