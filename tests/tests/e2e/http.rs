//! Plain proxying, no filters: both protocols, header hygiene, streaming and bodies, routing,
//! and what the client gets when the upstream fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::{Method, Request, StatusCode};
use weft_tests::{
    GarbageUpstream, Proto, REQUEST_TIMEOUT, Reply, SilentUpstream, Upstream, closed_addr, empty,
    get, get_with, next_chunk, post_with, request, send_h2c_direct, start_proxy,
};

use crate::{one_route, one_route_with};

// The test servers on their own, no proxy: when these fail, nothing else can pass.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_describes_requests_over_http1_and_h2c() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, upstream.addr(), "/hello?x=1", &[("x-test", "yes")]).await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
        let seen = reply.seen()?;
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/hello?x=1");
        assert_eq!(seen.version, proto.version_name());
        assert_eq!(seen.header("x-test"), Some("yes"));

        let reply = get_with(proto, upstream.addr(), "/status/418", &[]).await?;
        assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);

        let reply = post_with(proto, upstream.addr(), "/echo", &[], "ping").await?;
        assert_eq!(reply.text(), "ping");

        let reply = get_with(proto, upstream.addr(), "/stream/3", &[]).await?;
        assert_eq!(reply.text(), "chunk 0\nchunk 1\nchunk 2\n");
    }
    assert_eq!(upstream.requests(), 8);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_holds_streams_until_released() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    assert_first_chunk_arrives_while_held(&upstream, upstream.addr(), Proto::Http1).await
}

// Through the proxy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_both_client_protocols_to_every_upstream_protocol() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    // (upstream `protocol`, the protocol the upstream must see; None = same as the client's)
    let cases = [
        (None, None),
        (Some("auto"), None),
        (Some("http1"), Some(Proto::Http1)),
        (Some("http2"), Some(Proto::H2c)),
    ];
    for (protocol, upstream_proto) in cases {
        let field = protocol.map(|p| format!("protocol: {p}"));
        let fields: Vec<&str> = field.iter().map(String::as_str).collect();
        let proxy = start_proxy(&one_route_with(upstream.addr(), &[], &fields)).await?;
        for client in Proto::ALL {
            let case = format!("client {client:?}, upstream protocol {protocol:?}");
            let reply = get_with(client, proxy.addr(), "/hello?x=1", &[])
                .await
                .context(case.clone())?;
            assert_eq!(reply.status, StatusCode::OK, "{case}: {}", reply.text());
            assert_eq!(reply.version, client.version(), "{case}: response version");
            let seen = reply.seen().context(case.clone())?;
            assert_eq!(seen.method, "GET", "{case}");
            assert_eq!(
                seen.path, "/hello?x=1",
                "{case}: path and query must reach the upstream"
            );
            assert_eq!(
                seen.version,
                upstream_proto.unwrap_or(client).version_name(),
                "{case}: HTTP version the upstream saw"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_not_forwarded() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&one_route(upstream.addr(), &[])).await?;
    // HTTP/1.1 only: HTTP/2 forbids connection-specific headers on the wire altogether.
    let reply = get(
        proxy.addr(),
        "/",
        &[
            ("connection", "x-hop-named"),
            ("x-hop-named", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = reply.seen()?;
    for hop in [
        "connection",
        "x-hop-named",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert!(
            !seen.has_header(hop),
            "hop-by-hop header {hop:?} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(
        seen.header("x-end-to-end"),
        Some("kept"),
        "{:?}",
        seen.headers
    );

    let reply = get(
        proxy.addr(),
        "/",
        &[("te", "trailers"), ("upgrade", "example/1")],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = reply.seen()?;
    assert!(
        !seen.has_header("upgrade"),
        "upgrade reached the upstream: {:?}",
        seen.headers
    );
    assert_eq!(
        seen.header("te"),
        Some("trailers"),
        "`te: trailers` must be forwarded (gRPC needs it): {:?}",
        seen.headers
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_not_forwarded() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    // An HTTP/1.1 upstream may send connection headers; an HTTP/2 client must never see them.
    let proxy = start_proxy(&one_route_with(upstream.addr(), &[], &["protocol: http1"])).await?;
    let path = "/with-headers?connection=x-up-hop&x-up-hop=1&keep-alive=timeout5\
                &proxy-connection=keep-alive&x-end-to-end=kept";
    for proto in Proto::ALL {
        let reply = get_with(proto, proxy.addr(), path, &[])
            .await
            .context(format!("{proto:?}"))?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
        for hop in ["x-up-hop", "keep-alive", "proxy-connection"] {
            assert!(
                reply.header(hop).is_none(),
                "{proto:?}: hop-by-hop response header {hop:?} reached the client: {:?}",
                reply.headers
            );
        }
        let connection = reply.header("connection").unwrap_or_default();
        assert!(
            !connection.contains("x-up-hop"),
            "{proto:?}: the upstream's connection header reached the client: {connection:?}"
        );
        assert_eq!(reply.header("x-end-to-end"), Some("kept"), "{proto:?}");
    }
    Ok(())
}

/// The `x-forwarded-for` values as one list, however the proxy spread them over fields.
fn forwarded_for(seen: &weft_tests::Seen) -> Vec<String> {
    seen.header_values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_name_the_client() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&one_route(upstream.addr(), &[])).await?;
    for proto in Proto::ALL {
        let seen = get_with(proto, proxy.addr(), "/", &[]).await?.seen()?;
        assert_eq!(
            forwarded_for(&seen),
            ["127.0.0.1"],
            "{proto:?}: {:?}",
            seen.headers
        );
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"), "{proto:?}");

        let seen = get_with(proto, proxy.addr(), "/", &[("x-forwarded-for", "10.0.0.1")])
            .await?
            .seen()?;
        assert_eq!(
            forwarded_for(&seen),
            ["10.0.0.1", "127.0.0.1"],
            "{proto:?}: the client IP must be appended to an existing x-forwarded-for"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_authority_are_preserved() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let same = start_proxy(&one_route(upstream.addr(), &[])).await?;
    let to_http1 = start_proxy(&one_route_with(upstream.addr(), &[], &["protocol: http1"])).await?;

    let seen = get(same.addr(), "/", &[("host", "example.test")])
        .await?
        .seen()?;
    assert_eq!(
        seen.header("host"),
        Some("example.test"),
        "HTTP/1.1 Host: {:?}",
        seen.headers
    );

    let h2 = |addr: SocketAddr| async move {
        let req = Request::get("http://example.test:8080/authority")
            .body(empty())
            .expect("valid request");
        send_h2c_direct(addr, req).await?.seen()
    };
    let seen = h2(same.addr()).await?;
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(
        seen.authority.as_deref(),
        Some("example.test:8080"),
        "HTTP/2 :authority must reach an HTTP/2 upstream"
    );
    let seen = h2(to_http1.addr()).await?;
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(
        seen.header("host"),
        Some("example.test:8080"),
        "HTTP/2 :authority must become Host for an HTTP/1.1 upstream: {:?}",
        seen.headers
    );
    Ok(())
}

/// Requests `/stream/3?hold` at `addr` (the upstream, or a proxy in front of it): chunk 0 must
/// arrive while the upstream holds the other two, proving nobody buffers the body.
async fn assert_first_chunk_arrives_while_held(
    upstream: &Upstream,
    addr: SocketAddr,
    proto: Proto,
) -> anyhow::Result<()> {
    let req = request(Method::GET, addr, "/stream/3?hold", &[], empty());
    let response = tokio::time::timeout(REQUEST_TIMEOUT, proto.client().request(req))
        .await
        .context("no response head within the timeout")??;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = next_chunk(&mut body).await.context(
        "chunk 0 did not arrive while the upstream held the rest: the body is being buffered",
    )?;
    assert_eq!(first.as_deref(), Some(&b"chunk 0\n"[..]));
    assert_eq!(
        upstream.streams_finished(),
        0,
        "the upstream sent everything early"
    );

    upstream.release_streams();
    let mut rest = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&rest), "chunk 1\nchunk 2\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_responses_stay_streaming() -> anyhow::Result<()> {
    for proto in Proto::ALL {
        // Releasing a held stream is for good: one upstream per case.
        let upstream = Upstream::start().await?;
        let proxy = start_proxy(&one_route(upstream.addr(), &[])).await?;
        assert_first_chunk_arrives_while_held(&upstream, proxy.addr(), proto)
            .await
            .with_context(|| format!("client {proto:?}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_pass_through() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&one_route(upstream.addr(), &[])).await?;
    // Larger than any socket or HTTP/2 window buffer, and not all one byte.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    for proto in Proto::ALL {
        let reply = post_with(proto, proxy.addr(), "/echo", &[], big.clone()).await?;
        assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
        assert!(
            reply.body == big,
            "{proto:?}: echoed body differs ({} bytes back, {} sent)",
            reply.body.len(),
            big.len()
        );

        let seen = post_with(
            proto,
            proxy.addr(),
            "/form",
            &[("content-type", "text/plain")],
            "a=1",
        )
        .await?
        .seen()?;
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.body, "a=1", "{proto:?}");
        assert_eq!(seen.header("content-type"), Some("text/plain"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_tried_in_order() -> anyhow::Result<()> {
    let a = Upstream::start().await?;
    let b = Upstream::start().await?;
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    routes:
      - name: exact
        match: {{ path: {{ exact: /exact }} }}
        upstream: b
      - name: canary
        match: {{ path: {{ prefix: /api }}, headers: [ {{ name: x-env, exact: canary }} ] }}
        upstream: b
      - name: debug
        match: {{ path: {{ prefix: /api }}, headers: [ {{ name: x-debug, present: true }} ] }}
        upstream: b
      - name: tenant
        match: {{ path: {{ prefix: /api }}, headers: [ {{ name: x-tenant, prefix: team- }} ] }}
        upstream: b
      - name: api
        match: {{ path: {{ prefix: /api }} }}
        upstream: a
  - name: broad-first
    address: 127.0.0.1:0
    direction: inbound
    routes:
      - name: everything
        match: {{ path: {{ prefix: / }} }}
        upstream: a
      - name: api-after
        match: {{ path: {{ prefix: /api }} }}
        upstream: b
upstreams:
  - name: a
    endpoints: ["{a}"]
  - name: b
    endpoints: ["{b}"]
"#,
        a = a.addr(),
        b = b.addr()
    );
    let proxy = start_proxy(&yaml).await?;
    let inbound = proxy.addr();
    let broad_first = proxy.listener("broad-first");

    // (listener, path, headers, which upstream must get it: Some("a"|"b") or None for 404)
    type Case<'a> = (
        SocketAddr,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
    );
    let cases: &[Case<'_>] = &[
        (inbound, "/exact", &[], Some("b")),
        (inbound, "/exact/more", &[], None),
        (inbound, "/api/x", &[("x-env", "canary")], Some("b")),
        (inbound, "/api/x", &[("x-env", "prod")], Some("a")),
        (inbound, "/api/x", &[("x-debug", "")], Some("b")),
        (inbound, "/api/x", &[("x-tenant", "team-blue")], Some("b")),
        (inbound, "/api/x", &[("x-tenant", "blue-team")], Some("a")),
        (inbound, "/api", &[], Some("a")),
        (inbound, "/other", &[], None),
        (broad_first, "/api/x", &[("x-env", "canary")], Some("a")),
    ];
    for (listener, path, headers, expected) in cases {
        let case = format!("{path} with {headers:?} on {listener}");
        let (a_before, b_before) = (a.requests(), b.requests());
        let reply = get(*listener, path, headers).await.context(case.clone())?;
        let got = match (a.requests() - a_before, b.requests() - b_before) {
            (1, 0) => Some("a"),
            (0, 1) => Some("b"),
            (0, 0) => None,
            other => panic!("{case}: upstream request counts moved by {other:?}"),
        };
        assert_eq!(
            got, *expected,
            "{case}: wrong upstream (status {})",
            reply.status
        );
        if expected.is_none() {
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{case}");
            assert_eq!(reply.text(), "weft: no route matched\n", "{case}");
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{case}: {}", reply.text());
        }
    }
    Ok(())
}

/// A proxy whose routes lead to failing upstreams: `/refused` (nothing listens: `refused`),
/// `/silent` (accepts, never answers: `silent`, route timeout 300ms), `/slow` (answers after
/// the route timeout of 300ms: `slowpoke`), `/garbage` (answers non-HTTP: `liar`), and
/// anything else to the healthy `app`.
struct Failing {
    proxy: weft_tests::TestProxy,
    silent: SilentUpstream,
    _app: Upstream,
    _garbage: GarbageUpstream,
}

async fn failing_upstreams() -> anyhow::Result<Failing> {
    let app = Upstream::start().await?;
    let silent = SilentUpstream::start().await?;
    let garbage = GarbageUpstream::start().await?;
    let yaml = format!(
        r#"
listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    routes:
      - name: refused
        match: {{ path: {{ prefix: /refused }} }}
        upstream: refused
      - name: silent
        match: {{ path: {{ prefix: /silent }} }}
        upstream: silent
        timeout: 300ms
      - name: slow
        match: {{ path: {{ prefix: /slow }} }}
        upstream: slowpoke
        timeout: 300ms
      - name: garbage
        match: {{ path: {{ prefix: /garbage }} }}
        upstream: liar
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: refused
    endpoints: ["{refused}"]
    connect_timeout: 1s
  - name: silent
    endpoints: ["{silent}"]
  - name: slowpoke
    endpoints: ["{app}"]
  - name: liar
    endpoints: ["{garbage}"]
  - name: app
    endpoints: ["{app}"]
"#,
        refused = closed_addr(),
        silent = silent.addr(),
        garbage = garbage.addr(),
        app = app.addr(),
    );
    Ok(Failing {
        proxy: start_proxy(&yaml).await?,
        silent,
        _app: app,
        _garbage: garbage,
    })
}

/// Checks a proxy-generated error reply: status, `text/plain`, a body starting with `weft: `
/// that names the upstream.
fn assert_proxy_error(reply: &Reply, status: StatusCode, upstream: &str) {
    let body = reply.text();
    assert_eq!(reply.status, status, "body: {body:?}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "content-type of a {status} from the proxy: {content_type:?}"
    );
    assert!(body.starts_with("weft: "), "{status} body: {body:?}");
    assert!(
        body.contains(upstream),
        "{status} body must name upstream {upstream:?}: {body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_503() -> anyhow::Result<()> {
    let failing = failing_upstreams().await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, failing.proxy.addr(), "/refused", &[]).await?;
        assert_proxy_error(&reply, StatusCode::SERVICE_UNAVAILABLE, "refused");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_never_answers_is_504() -> anyhow::Result<()> {
    let failing = failing_upstreams().await?;
    let started = Instant::now();
    let reply = get(failing.proxy.addr(), "/silent", &[]).await?;
    assert_proxy_error(&reply, StatusCode::GATEWAY_TIMEOUT, "silent");
    assert!(
        failing.silent.connections() > 0,
        "the proxy never connected to the upstream"
    );
    // Generous: the point is that the 300ms route timeout fired, not the client's own.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "504 took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_route_timeout_is_504() -> anyhow::Result<()> {
    let failing = failing_upstreams().await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, failing.proxy.addr(), "/slow/5000", &[]).await?;
        assert_proxy_error(&reply, StatusCode::GATEWAY_TIMEOUT, "slowpoke");
    }
    // Under the timeout, the same upstream is fine.
    let reply = get(failing.proxy.addr(), "/slow/1", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_upstream_is_502() -> anyhow::Result<()> {
    let failing = failing_upstreams().await?;
    for proto in Proto::ALL {
        let reply = get_with(proto, failing.proxy.addr(), "/garbage", &[]).await?;
        assert_proxy_error(&reply, StatusCode::BAD_GATEWAY, "liar");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_statuses_pass_through_untouched() -> anyhow::Result<()> {
    let failing = failing_upstreams().await?;
    for code in [404u16, 500, 503] {
        let reply = get(failing.proxy.addr(), &format!("/status/{code}"), &[]).await?;
        assert_eq!(reply.status.as_u16(), code);
        let seen = reply.seen().context(
            "an upstream's error response must reach the client as the upstream sent it",
        )?;
        assert_eq!(seen.path, format!("/status/{code}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_get_431() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let yaml = format!(
        "limits: {{ max_request_header_bytes: 4096 }}\n{}",
        one_route(upstream.addr(), &[])
    );
    let proxy = start_proxy(&yaml).await?;
    let big = "a".repeat(8 * 1024);
    let small = "a".repeat(1024);
    for proto in Proto::ALL {
        let reply = get_with(proto, proxy.addr(), "/", &[("x-big", &big)]).await?;
        assert_eq!(
            reply.status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{proto:?}: 8 KiB of headers over a 4 KiB limit: {}",
            reply.text()
        );
        let reply = get_with(proto, proxy.addr(), "/", &[("x-small", &small)]).await?;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{proto:?}: 1 KiB of headers is under the limit"
        );
    }
    assert_eq!(
        upstream.requests(),
        2,
        "only the requests under the limit reach the upstream"
    );
    Ok(())
}
