//! The data plane against hostile and broken clients: path spellings that would dodge a
//! route's policy, connections that say nothing (or half of something), HTTP/2 rapid reset,
//! conflicting authorities, broken bodies, hop-by-hop tricks, and filters that spin, fail or
//! label metrics with request data.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_tests::{Upstream, guests, start_proxy};

use crate::filter;

/// Send `bytes` on a new connection and read until the proxy closes it (or 10 s pass).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status of the first response in `text`, or 0.
fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A GET of `target` with `Host: app`, closing the connection after the reply.
async fn get_raw(addr: SocketAddr, target: &str) -> String {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// The sum of the samples `name` with every label in `labels`, from the proxy's `/metrics`
/// (0 when there is none).
async fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    weft_tests::scrape(admin)
        .await
        .expect("metrics")
        .value(name, labels)
        .unwrap_or(0.0)
}

/// Two routes on one listener: `admin` (prefix `/admin`) behind a filter that answers every
/// request with 401, and `default` without it.
fn admin_behind_a_filter(upstream: SocketAddr, paths: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    {paths}
    filters: [{deny}, {headers}]
    routes:
      - name: admin
        match: {{ path: {{ prefix: /admin }} }}
        upstream: app
      - name: default
        upstream: app
        filters: {{ deny: {{ disabled: true }} }}
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        deny = filter(
            "deny",
            guests::CONFIG_ECHO,
            "config: { greeting: denied, status: 401 }"
        ),
        headers = filter("headers", guests::HEADERS, ""),
    )
}

#[tokio::test]
async fn path_spellings_cannot_dodge_a_route_scoped_filter() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&admin_behind_a_filter(upstream.addr(), "")).await?;
    let addr = proxy.addr();
    assert_eq!(status_of(&get_raw(addr, "/admin").await), 401);
    assert_eq!(status_of(&get_raw(addr, "/public").await), 200);
    for spelling in [
        "//admin",
        "///admin/x",
        "/./admin",
        "/x/../admin",
        "/x/y/../../admin",
        "/%61dmin",
        "/%61%64%6d%69%6e",
        "/x/%2e%2e/admin",
        "/x/%2E%2E/admin",
        "/x/.%2e/admin",
        "/admin/.",
        "/admin/x/..",
        "/admin/x/%2e%2e",
        "//admin?x=1",
    ] {
        let reply = get_raw(addr, spelling).await;
        assert_eq!(status_of(&reply), 401, "{spelling}: {reply}");
    }
    for refused in [
        "/%2Fadmin",
        "/x%2fadmin",
        "/x%5Cadmin",
        "/x/..%2fadmin",
        "/../admin",
        "/%2e%2e/admin",
        "/admin%00",
        "/admin%zz",
        "/x\\admin",
        "*",
    ] {
        let reply = get_raw(addr, refused).await;
        assert_eq!(status_of(&reply), 400, "{refused}: {reply}");
    }
    // Nothing that reached the upstream was meant for `/admin`.
    assert_eq!(upstream.requests(), 1, "only /public reached the upstream");
    Ok(())
}

#[tokio::test]
async fn routes_filters_and_the_upstream_see_one_normalized_path() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&admin_behind_a_filter(upstream.addr(), "")).await?;
    let reply = get_raw(proxy.addr(), "/a//b/./c/../%64?q=/../x%2f").await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    assert!(
        reply.contains("x-weft-saw-path: /a/b/d?q=/../x%2f"),
        "the filter saw the normalized path (the query is left alone): {reply}"
    );
    assert!(
        reply.contains(r#""path":"/a/b/d?q=/../x%2f""#),
        "the upstream received the normalized path: {reply}"
    );
    // Over HTTP/2 too.
    let h2 = weft_tests::get_h2c(proxy.addr(), "/x/../admin", &[]).await?;
    assert_eq!(h2.status, StatusCode::UNAUTHORIZED, "{}", h2.text());
    Ok(())
}

#[tokio::test]
async fn escaped_slashes_can_be_kept_encoded() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let yaml = admin_behind_a_filter(upstream.addr(), "paths: { escaped_slashes: keep }");
    let proxy = start_proxy(&yaml).await?;
    let reply = get_raw(proxy.addr(), "/files/a%2fb").await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    assert!(reply.contains(r#""path":"/files/a%2Fb""#), "{reply}");
    // Kept encoded, a slash cannot climb: `..%2f` is one segment named `..%2F`.
    let reply = get_raw(proxy.addr(), "/x/..%2fadmin").await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    assert!(reply.contains(r#""path":"/x/..%2Fadmin""#), "{reply}");
    Ok(())
}

fn timeouts_config(upstream: SocketAddr, limits: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
limits: {{ {limits} }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    routes:
      - name: app
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#
    )
}

/// How long until the proxy closes `stream` (reads return 0 or fail), at most 10 s.
async fn until_closed(mut stream: TcpStream, from: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    let deadline = from + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return from.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => return from.elapsed(),
        }
    }
}

/// An HTTP/2 frame header: length, type, flags, stream.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn connections_that_send_nothing_or_half_a_head_are_closed_in_time() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&timeouts_config(
        upstream.addr(),
        "request_head_timeout: 300ms, idle_timeout: 5s",
    ))
    .await?;
    let addr = proxy.addr();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // HEADERS on stream 1 without END_HEADERS (flags 0): the header block never ends.
    let mut headers_without_end = preface.to_vec();
    headers_without_end.extend(frame(0x4, 0, 0, &[]));
    headers_without_end.extend(frame(0x1, 0, 1, &[0x82]));
    let cases: [(&str, Vec<u8>); 4] = [
        ("silent", Vec::new()),
        ("half a preface", preface[..10].to_vec()),
        ("half a head", b"GET / HTTP/1.1\r\nHost: app\r\n".to_vec()),
        ("headers without END_HEADERS", headers_without_end),
    ];
    let mut waits = Vec::new();
    for (name, bytes) in cases {
        let mut stream = TcpStream::connect(addr).await?;
        let start = Instant::now();
        stream.write_all(&bytes).await?;
        waits.push((name, tokio::spawn(until_closed(stream, start))));
    }
    for (name, wait) in waits {
        let waited = wait.await?;
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "{name}: closed after {waited:?}, expected about 300ms"
        );
    }
    let closed = metric(
        proxy.admin(),
        "weft_downstream_connections_closed_total",
        &[("reason", "head_timeout")],
    )
    .await;
    assert_eq!(closed, 4.0);
    Ok(())
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_are_not() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&timeouts_config(
        upstream.addr(),
        "request_head_timeout: 400ms, idle_timeout: 600ms",
    ))
    .await?;
    let addr = proxy.addr();

    // HTTP/1.1 keep-alive: a request every 200 ms for 1.5 s (past both timeouts) is served on
    // one connection, and so is a response that takes longer than the idle timeout.
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let ended = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    let mut last_response = Instant::now();
    for path in ["/a", "/b", "/c", "/d", "/e", "/f", "/g", "/slow/900"] {
        let request = Request::get(path)
            .header("host", "app")
            .body(http_body_util::Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        http_body_util::BodyExt::collect(response.into_body()).await?;
        last_response = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then idle: closed about the idle timeout after the last response.
    let closed_at = tokio::time::timeout(Duration::from_secs(10), ended).await??;
    let waited = closed_at.duration_since(last_response);
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "an idle HTTP/1.1 connection closed {waited:?} after its last response"
    );

    // HTTP/2: one request, then nothing: the connection ends (GOAWAY) at the idle timeout.
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    let ended = tokio::spawn(async move {
        let start = Instant::now();
        let _ = connection.await;
        start.elapsed()
    });
    let request =
        Request::get(format!("http://{addr}/x")).body(http_body_util::Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    let waited = tokio::time::timeout(Duration::from_secs(10), ended).await??;
    assert!(
        waited < Duration::from_secs(5),
        "an idle HTTP/2 connection lasted {waited:?}"
    );
    let closed = metric(
        proxy.admin(),
        "weft_downstream_connections_closed_total",
        &[("reason", "idle_timeout")],
    )
    .await;
    assert_eq!(closed, 2.0);
    Ok(())
}

#[tokio::test]
async fn the_connection_cap_holds_and_a_freed_slot_serves_the_next_client() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&timeouts_config(
        upstream.addr(),
        "max_connections: 2, request_head_timeout: 30s",
    ))
    .await?;
    let addr = proxy.addr();
    let first = TcpStream::connect(addr).await?;
    let second = TcpStream::connect(addr).await?;
    // Let the proxy accept both before the third arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(proxy.admin(), "weft_downstream_connections_active", &[]).await < 2.0 {
        assert!(Instant::now() < deadline, "the proxy never accepted two");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let third = TcpStream::connect(addr).await?;
    let waited = until_closed(third, Instant::now()).await;
    assert!(
        waited < Duration::from_secs(2),
        "over the cap, a connection is closed at once (took {waited:?})"
    );
    assert_eq!(
        metric(
            proxy.admin(),
            "weft_downstream_connections_closed_total",
            &[("reason", "overflow")]
        )
        .await,
        1.0
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get_raw(addr, "/after").await;
        if status_of(&reply) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a freed slot never served a new client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(second);
    Ok(())
}

#[tokio::test]
async fn a_rapid_reset_client_gets_goaway_and_the_upstream_a_bounded_load() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&timeouts_config(
        upstream.addr(),
        "http2_max_premature_resets: 50",
    ))
    .await?;
    let stream = TcpStream::connect(proxy.addr()).await?;
    let (client, connection) = h2::client::handshake(stream).await?;
    let connection = tokio::spawn(connection);
    let mut client = client;
    let mut sent = 0usize;
    let mut refused = false;
    // Rounds of 10 streams, each reset once its request has reached the upstream: resets
    // after the proxy accepted the stream, which HTTP/2's own pending-accept limit cannot see.
    'rounds: for _ in 0..30 {
        let mut in_flight = Vec::new();
        for _ in 0..10 {
            let ready = match tokio::time::timeout(Duration::from_secs(5), client.ready()).await {
                Ok(Ok(c)) => c,
                _ => {
                    refused = true;
                    break 'rounds;
                }
            };
            client = ready;
            let request = Request::get(format!("http://{}/slow/5000", proxy.addr())).body(())?;
            match client.send_request(request, true) {
                Ok((response, _)) => {
                    sent += 1;
                    in_flight.push(response);
                }
                Err(_) => {
                    refused = true;
                    break 'rounds;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while upstream.requests() < sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Dropping a response future resets its stream (RST_STREAM CANCEL).
        drop(in_flight);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "the proxy kept accepting streams from a client that reset all {sent} of them"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(
        upstream.requests() <= 70,
        "{} reset requests reached the upstream",
        upstream.requests()
    );
    assert_eq!(
        metric(
            proxy.admin(),
            "weft_downstream_connections_closed_total",
            &[("reason", "premature_resets")]
        )
        .await,
        1.0
    );
    // Other clients are served as before.
    let reply = weft_tests::get(proxy.addr(), "/fine", &[]).await?;
    assert_eq!(reply.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn filters_and_the_upstream_agree_on_one_authority() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&admin_behind_a_filter(upstream.addr(), "")).await?;
    let addr = proxy.addr();

    // Absolute form wins over Host, and Host is rewritten to match.
    let reply = raw(
        addr,
        b"GET http://evil.example/x HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    assert!(
        reply.contains("x-weft-saw-authority: evil.example"),
        "{reply}"
    );
    assert!(reply.contains(r#""authority":"evil.example""#), "{reply}");
    assert!(!reply.contains("good.example"), "{reply}");

    // HTTP/1.1 without Host, with two, and with malformed authorities: 400.
    for (what, head) in [
        ("no Host", "GET / HTTP/1.1\r\n"),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n"),
        ("userinfo", "GET / HTTP/1.1\r\nHost: user@a.example\r\n"),
        (
            "double userinfo",
            "GET / HTTP/1.1\r\nHost: u@v@a.example\r\n",
        ),
        ("port 99999", "GET / HTTP/1.1\r\nHost: a.example:99999\r\n"),
        (
            "absolute form with userinfo",
            "GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n",
        ),
        (
            "CONNECT",
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n",
        ),
    ] {
        let reply = raw(addr, format!("{head}Connection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status_of(&reply), 400, "{what}: {reply}");
    }
    // HTTP/1.0 has no Host requirement.
    let reply = raw(addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&reply), 200, "{reply}");

    // HTTP/2: `host` must equal `:authority`.
    for (host, want) in [("b.example", 400), ("a.example", 200)] {
        let stream = TcpStream::connect(addr).await?;
        let (client, connection) = h2::client::handshake(stream).await?;
        tokio::spawn(connection);
        let mut client = client.ready().await?;
        let request = Request::get("http://a.example/h2")
            .header("host", host)
            .body(())?;
        let (response, _) = client.send_request(request, true)?;
        let response = response.await?;
        assert_eq!(response.status().as_u16(), want, "host {host}");
        if want == 200 {
            assert_eq!(
                response.headers()["x-weft-saw-authority"],
                "a.example",
                "the filter saw :authority"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_malformed_chunked_client_body_is_the_clients_error() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&timeouts_config(upstream.addr(), "")).await?;
    let reply = raw(
        proxy.addr(),
        b"POST /describe HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nnot hex\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&reply), 400, "{reply}");
    let counted = metric(
        proxy.admin(),
        "weft_requests_total",
        &[("route", "app"), ("status", "400")],
    )
    .await;
    assert_eq!(counted, 1.0, "counted as the client's error");
    Ok(())
}

#[tokio::test]
async fn connection_named_headers_go_before_filters_add_theirs() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let proxy = start_proxy(&admin_behind_a_filter(upstream.addr(), "")).await?;
    let reply = raw(
        proxy.addr(),
        b"GET /x HTTP/1.1\r\nHost: app\r\nConnection: close, x-weft-added, x-secret\r\nx-secret: 1\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let seen: weft_tests::Seen = serde_json::from_str(body.trim())?;
    assert_eq!(
        seen.header("x-weft-added"),
        Some("1"),
        "the client's Connection header cannot remove what a filter added"
    );
    assert!(!seen.has_header("x-secret"), "named hop-by-hop fields go");
    assert!(!seen.has_header("connection"));
    Ok(())
}

#[tokio::test]
async fn injected_delays_over_the_cap_go_on_at_once() -> anyhow::Result<()> {
    let upstream = Upstream::start().await?;
    let yaml = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
limits: {{ max_active_delays_per_filter: 3 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    filters: [{faults}]
    routes:
      - name: app
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        upstream = upstream.addr(),
        faults = filter(
            "faults",
            guests::FAULT_INJECTION,
            "config: { header_faults: true }"
        ),
    );
    let proxy = start_proxy(&yaml).await?;
    let addr = proxy.addr();
    let started = Instant::now();
    let requests: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                let reply = weft_tests::get(addr, "/", &[("x-weft-fault-delay", "1500")]).await;
                (reply.map(|r| r.status), started.elapsed())
            })
        })
        .collect();
    let mut held = 0;
    let mut at_once = 0;
    for request in requests {
        let (status, took) = request.await?;
        assert_eq!(status?, StatusCode::OK);
        if took >= Duration::from_millis(1400) {
            held += 1;
        } else if took < Duration::from_millis(1000) {
            at_once += 1;
        }
    }
    assert_eq!((held, at_once), (3, 2), "three held, two over the cap");
    assert_eq!(
        metric(
            proxy.admin(),
            "weft_filter_delays_overflow_total",
            &[("filter", "faults")]
        )
        .await,
        2.0
    );
    Ok(())
}

#[tokio::test]
async fn failure_logs_and_metric_series_stay_bounded_under_distinct_inputs() -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts WARN lines about filter failures.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut text = String::new();
                struct Visit<'a>(&'a mut String);
                impl tracing::field::Visit for Visit<'_> {
                    fn record_debug(
                        &mut self,
                        field: &tracing::field::Field,
                        value: &dyn std::fmt::Debug,
                    ) {
                        self.0.push_str(&format!("{}={value:?} ", field.name()));
                    }
                }
                event.record(&mut Visit(&mut text));
                if let Ok(mut lines) = self.0.lock() {
                    lines.push(text);
                }
            }
        }
    }
    let lines = Lines::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));

    let upstream = Upstream::start().await?;
    let yaml = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: inbound
    address: 127.0.0.1:0
    routes:
      - name: trap
        match: {{ path: {{ prefix: /trap }} }}
        upstream: app
        filters: {{ counter: {{ disabled: true }} }}
      - name: count
        upstream: app
        filters: {{ boom: {{ disabled: true }} }}
    filters: [{boom}, {counter}]
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        upstream = upstream.addr(),
        boom = filter("boom", guests::TRAP, "failure_policy: fail_open"),
        counter = filter("counter", guests::METRICS, ""),
    );
    let proxy = start_proxy(&yaml).await?;
    let client = weft_tests::http1_client();
    let start = Instant::now();
    let n = 20_000;
    for i in 0..n {
        // Distinct inputs: every request has a method of its own, which the metrics guest
        // uses as a label value; every other one fails in the trap guest.
        let (method, path) = if i % 2 == 0 {
            (format!("M{i:05}"), "/count")
        } else {
            ("GET".to_owned(), "/trap")
        };
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes())?)
            .uri(format!("http://{}{path}", proxy.addr()))
            .body(weft_tests::empty())?;
        let reply = weft_tests::send(&client, request).await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let elapsed = start.elapsed();

    let failures: Vec<String> = lines
        .0
        .lock()
        .map(|l| l.iter().filter(|l| l.contains("boom")).cloned().collect())
        .unwrap_or_default();
    let bound = elapsed.as_secs() as usize + 2;
    assert!(
        !failures.is_empty() && failures.len() <= bound,
        "{} failure lines for {} failures in {elapsed:?} (at most one a second)",
        failures.len(),
        n / 2
    );
    assert!(
        failures.iter().skip(1).any(|l| l.contains("not logged")),
        "later lines say how many were left out: {failures:?}"
    );

    let text = weft_tests::get(proxy.admin(), "/metrics", &[])
        .await?
        .text();
    let series = text
        .lines()
        .filter(|l| l.starts_with("weft_filter_requests_seen_total{"))
        .count();
    assert!(
        (1000..=1001).contains(&series),
        "{series} series for 10,000 distinct methods"
    );
    assert!(text.contains(r#"method="overflow""#), "the overflow series");
    let overflow = metric(
        proxy.admin(),
        "weft_filter_metric_series_overflow_total",
        &[("filter", "counter"), ("metric", "requests_seen")],
    )
    .await;
    assert!(overflow >= 9000.0, "overflow updates counted: {overflow}");
    Ok(())
}
