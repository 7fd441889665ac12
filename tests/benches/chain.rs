//! What the four first-party filters cost a request, end to end in-process: the same request
//! through a proxy without filters and through one running authz → rate-limit → header-router →
//! fault-injection, all allowing and no fault firing. The difference between the two is the
//! chain's cost per request (the issue's target: at most 10 µs).
//!
//! Both proxies, the upstream and the client run in this process on 127.0.0.1, over kept-alive
//! HTTP/1.1 connections, one request at a time.

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::Method;
use http::StatusCode;
use weft_tests::{Upstream, empty, guests, http1_client, request, send, start_proxy};

const SECRET: &[u8] = b"chain-bench-secret-0123456789abcdef";

fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT","kid":"bench"}"#);
    let claims = B64.encode(format!(
        r#"{{"iss":"bench","sub":"alice","aud":"app","exp":{}}}"#,
        now + 3600
    ));
    let input = format!("{header}.{claims}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn config(upstream: std::net::SocketAddr, with_filters: bool) -> String {
    let filters = if with_filters {
        format!(
            r#"
      - name: authz
        module: {authz:?}
        config:
          jwt:
            jwks: {{ keys: [ {{ kty: oct, kid: bench, alg: HS256, k: "{key}" }} ] }}
            issuers: [bench]
            audiences: [app]
            claims_to_headers: [ {{ claim: sub, header: x-user }} ]
          rules:
            allow: [ {{ methods: [GET] }} ]
      - name: rate-limit
        module: {rate_limit:?}
        config:
          limits:
            - {{ name: per_client, key: [client_address], capacity: 1000000000, refill: {{ amount: 1000000000, interval: 1s }} }}
      - name: header-router
        module: {header_router:?}
        config:
          rules:
            - {{ name: beta, match: {{ headers: [ {{ name: x-version, exact: beta }} ] }}, upstream: app }}
            - {{ name: v2, match: {{ path: {{ prefix: /v2/ }} }}, upstream: app }}
      - name: fault-injection
        module: {fault_injection:?}
        config:
          abort: {{ status: 503, percentage: 0 }}
          header_faults: true"#,
            authz = guests::AUTHZ,
            rate_limit = guests::RATE_LIMIT,
            header_router = guests::HEADER_ROUTER,
            fault_injection = guests::FAULT_INJECTION,
            key = B64.encode(SECRET),
        )
    } else {
        " []".to_owned()
    };
    format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    filters:{filters}
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#
    )
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
    let bearer = format!("Bearer {}", token());
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
