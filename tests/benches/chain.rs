//! What the four first-party filters cost a request, end to end in-process: the same request
//! through a proxy without filters and through one running authz → rate-limit → header-router →
//! fault-injection, all allowing and no fault firing. The difference between the two is the
//! chain's cost per request (the target: at most 10 µs).
//!
//! Both proxies, the upstream and the client run in this process on 127.0.0.1, over kept-alive
//! HTTP/1.1 connections, one request at a time.

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use http::StatusCode;
use weft_tests::{Upstream, bench, empty, http1_client, request, send, start_proxy};

fn config(upstream: std::net::SocketAddr, with_filters: bool) -> String {
    let filters = if with_filters {
        bench::four_filters()
    } else {
        " []".to_owned()
    };
    bench::proxy_config("127.0.0.1:0", upstream, &filters)
}

fn chain(c: &mut Criterion) {
    // One thread: client, proxy and upstream take turns on it, so the difference between the
    // two lines is the CPU time the chain adds to a request, free of cross-thread wake-ups.
    let one = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    measure(c, "proxy_request_one_thread", &one);
    // Two workers, as the proxy runs by default on this machine: closer to production latency,
    // and noisier (the request hops between threads several times).
    let two = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    measure(c, "proxy_request", &two);
}

fn measure(c: &mut Criterion, group: &str, rt: &tokio::runtime::Runtime) {
    let (_upstream, bare, full) = rt.block_on(async {
        let upstream = Upstream::start().await.expect("upstream");
        let bare = start_proxy(&config(upstream.addr(), false))
            .await
            .expect("proxy without filters");
        let full = start_proxy(&config(upstream.addr(), true))
            .await
            .expect("proxy with the four filters");
        (upstream, bare, full)
    });
    let bearer = format!("Bearer {}", bench::hs256_token());
    let headers = [("authorization", bearer.as_str())];
    let mut group = c.benchmark_group(group);
    for (name, proxy) in [("no_filters", &bare), ("four_filters", &full)] {
        let addr = proxy.addr();
        // One kept-alive connection per proxy: the bench measures requests, not handshakes.
        let client = http1_client();
        let get = || {
            send(
                &client,
                request(Method::GET, addr, "/api/orders", &headers, empty()),
            )
        };
        let reply = rt.block_on(get()).expect("reply");
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
        group.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(get()).expect("reply").status))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = chain
}
criterion_main!(benches);
