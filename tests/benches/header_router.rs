//! The warm per-request cost of the header-router filter with a realistic config: four rules
//! (a path prefix, a method plus user-agent regex, a header with edits, a sticky canary split),
//! on requests with a dozen headers. The `noop` line is the floor every filter pays (one hook
//! call that reads one header); the router's budget is 2.5 µs.
//!
//! Run with: `cargo bench -p weft-tests --bench header_router`

#![allow(missing_docs)] // `criterion_group!` generates undocumented items.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use weft_runtime::{Directives, Lease, LoadedFilter, RequestHead, Verdict};
use weft_tests::bench;

fn config() -> serde_json::Value {
    serde_json::json!({
        "rules": [
            {
                "name": "internal",
                "match": { "path": { "prefix": "/internal/" } },
                "upstream": "internal"
            },
            {
                "name": "mobile",
                "match": {
                    "methods": ["GET"],
                    "headers": [{ "name": "user-agent", "regex": ".*(Android|iPhone).*" }]
                },
                "upstream": "mobile"
            },
            {
                "name": "beta-users",
                "match": { "headers": [{ "name": "x-beta", "exact": "true" }] },
                "upstream": "beta",
                "request_headers": { "set": { "x-env": "beta" } },
                "response_headers": { "add": { "x-upstream-choice": "beta" } }
            },
            {
                "name": "canary",
                "match": { "path": { "prefix": "/api/" } },
                "split": [
                    { "upstream": "app", "weight": 90 },
                    { "upstream": "app-canary", "weight": 10 }
                ],
                "sticky": { "header": "x-user" }
            }
        ]
    })
}

/// `GET path` with nine filler headers, a desktop user agent and `extra`, on upstream `app`.
fn request(path: &'static str, extra: &[(&'static str, &'static str)]) -> RequestHead {
    let agent = (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
    );
    let headers: Vec<_> = std::iter::once(agent)
        .chain(extra.iter().copied())
        .collect();
    bench::request(path, &headers)
}

/// The route's upstream, `app`, until the router chooses another.
fn directives() -> Directives {
    Directives {
        upstream: Some("app".into()),
        ..Directives::default()
    }
}

fn header_router(c: &mut Criterion) {
    let runtime = bench::runtime();
    let router = bench::load(
        &runtime,
        "router",
        weft_tests::guests::HEADER_ROUTER,
        &config(),
    );
    let noop = bench::load(
        &runtime,
        "noop",
        weft_tests::guests::NOOP,
        &serde_json::Value::Null,
    );
    let info = bench::info();

    let cases: [(&str, &Arc<LoadedFilter>, RequestHead, &str); 4] = [
        (
            "noop/read-one-header",
            &noop,
            request("/api/users/7", &[("x-user", "alice")]),
            "app",
        ),
        (
            "header_router/third-rule-header-match",
            &router,
            request("/api/users/7?verbose=1", &[("x-beta", "true")]),
            "beta",
        ),
        (
            "header_router/fourth-rule-sticky-split",
            &router,
            request("/api/users/7?verbose=1", &[("x-user", "alice")]),
            "app",
        ),
        (
            "header_router/no-match",
            &router,
            request("/web/index.html", &[]),
            "app",
        ),
    ];
    let mut lease = Lease::default();
    for (name, filter, head, upstream) in cases {
        c.bench_function(name, |b| {
            // A fresh copy per call: the router edits the request it routes.
            b.iter_batched_ref(
                || head.clone(),
                |head| {
                    let verdict = weft_runtime::block_on(filter.on_request_headers(
                        &mut lease,
                        head,
                        &mut directives(),
                        &info,
                    ))
                    .expect("the filter never fails");
                    assert!(matches!(verdict, Verdict::Continue));
                    black_box(&head);
                },
                BatchSize::SmallInput,
            );
            // Check the case routes where it says, on a copy outside the measurement.
            let mut probe = head.clone();
            let mut chosen = directives();
            weft_runtime::block_on(filter.on_request_headers(
                &mut lease,
                &mut probe,
                &mut chosen,
                &info,
            ))
            .expect("the filter never fails");
            assert_eq!(chosen.upstream.as_deref(), Some(upstream), "{name}");
        });
    }
}

/// What `max_regex_bytes` bounds: one header regex scanning a long value. `.*(\w\s?){20}.*`
/// is the heaviest pattern the README documents and `.*\w{20}.*` a heavy one (Unicode `\w` in
/// a counted repetition after `.*`: the lazy DFA cannot cache their states, so each byte is an
/// NFA step); `.*(Android|iPhone).*` is a light one. The values are word characters, so the
/// heavy patterns scan all of them and match.
fn heavy_regex(c: &mut Criterion) {
    let runtime = bench::runtime();
    let info = bench::info();
    let mut lease = Lease::default();
    let one_rule = |name: &str, pattern: &str, max_regex_bytes: usize| {
        let config = serde_json::json!({
            "rules": [{
                "match": { "headers": [{ "name": "x-agent", "regex": pattern }] },
                "upstream": "hit"
            }],
            "max_regex_bytes": max_regex_bytes,
        });
        bench::load(&runtime, name, weft_tests::guests::HEADER_ROUTER, &config)
    };
    let heaviest = one_rule("heaviest", r".*(\w\s?){20}.*", 4 << 10);
    let heaviest_8k = one_rule("heaviest8k", r".*(\w\s?){20}.*", 8 << 10);
    let heavy = one_rule("heavy", r".*\w{20}.*", 4 << 10);
    let heavy_64k = one_rule("heavy64k", r".*\w{20}.*", 64 << 10);
    let light = one_rule("light", ".*(Android|iPhone).*", 64 << 10);
    let value = |len: usize| "a".repeat(len);
    let (kib4, kib8, kib64, kb100) = (
        value(4 << 10),
        value(8 << 10),
        value(64 << 10),
        value(100_000),
    );
    let cases: [(&str, &Arc<LoadedFilter>, &str, &str); 8] = [
        ("header_router/heaviest-regex-4KiB", &heaviest, &kib4, "hit"),
        (
            "header_router/heaviest-regex-100KB-over-the-bound",
            &heaviest,
            &kb100,
            "app",
        ),
        (
            "header_router/heaviest-regex-8KiB-bound-raised",
            &heaviest_8k,
            &kib8,
            "hit",
        ),
        ("header_router/heavy-regex-4KiB", &heavy, &kib4, "hit"),
        (
            "header_router/heavy-regex-64KiB-bound-raised",
            &heavy_64k,
            &kib64,
            "hit",
        ),
        ("header_router/light-regex-4KiB", &light, &kib4, "app"),
        ("header_router/light-regex-8KiB", &light, &kib8, "app"),
        ("header_router/light-regex-64KiB", &light, &kib64, "app"),
    ];
    for (name, filter, value, upstream) in cases {
        let mut head = request("/", &[]);
        head.headers.insert(
            "x-agent",
            http::HeaderValue::try_from(value).expect("a valid value"),
        );
        c.bench_function(name, |b| {
            b.iter_batched_ref(
                || head.clone(),
                |head| {
                    let verdict = weft_runtime::block_on(filter.on_request_headers(
                        &mut lease,
                        head,
                        &mut directives(),
                        &info,
                    ))
                    .expect("the filter never fails");
                    assert!(matches!(verdict, Verdict::Continue));
                    black_box(&head);
                },
                BatchSize::SmallInput,
            );
            let mut probe = head.clone();
            let mut chosen = directives();
            weft_runtime::block_on(filter.on_request_headers(
                &mut lease,
                &mut probe,
                &mut chosen,
                &info,
            ))
            .expect("the filter never fails");
            assert_eq!(chosen.upstream.as_deref(), Some(upstream), "{name}");
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = header_router, heavy_regex
}
criterion_main!(benches);
