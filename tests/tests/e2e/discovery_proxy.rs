//! Discovery end to end: a control plane (directory source, or the Kubernetes source on the
//! fake API server's Services and EndpointSlices) streams a service's endpoints to a real
//! proxy that routes by authority, while clients keep sending. Endpoints are added, marked
//! terminating and removed under that load: no request may fail, removed endpoints stop
//! getting new requests once the proxy ACKed the update, and requests already on their way to
//! them complete (each upstream holds every request a few milliseconds).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use weft_tests::control_plane::{TestControlPlane, proxy_section};
use weft_tests::discovery::{TestEndpoint, k8s_endpoint_slice, k8s_service, service_yaml};
use weft_tests::kube_fake::FakeApiServer;
use weft_tests::scripted::{Behaviour, ScriptedUpstream, UPSTREAM_HEADER};
use weft_tests::{Proto, get_with, start_proxy};

const WAIT: Duration = Duration::from_secs(10);
/// How long each upstream holds a request: long enough that endpoint changes land while
/// requests are in flight to the endpoints that go.
const HOLD: Duration = Duration::from_millis(3);

/// A proxy whose only route sends by authority to discovered services of namespace `shop`.
fn proxy_config(cp: SocketAddr, name: &str, state: &Path) -> String {
    proxy_config_with(cp, name, state, "")
}

/// [`proxy_config`] with `filters` (a YAML list's items) on the listener.
fn proxy_config_with(cp: SocketAddr, name: &str, state: &Path, filters: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\n\
         listeners:\n  \
           - name: outbound\n    \
             address: 127.0.0.1:0\n    \
             direction: outbound\n    \
             filters: [{filters}]\n    \
             routes:\n      \
               - name: mesh\n        \
                 match: {{ path: {{ prefix: / }} }}\n        \
                 by_authority: true\n\
         upstreams: []\n\
         discovery: {{ namespaces: [shop] }}\n{}",
        proxy_section(&format!("http://{cp}"), name, "{}", state, None),
    )
}

/// Clients sending `GET /` with the service's authority in its several spellings, over
/// HTTP/1.1 and h2c, until stopped; every answer must be a 200 from one of the endpoints.
struct Load {
    stop: Arc<AtomicBool>,
    clients: tokio::task::JoinSet<Result<Vec<String>, String>>,
}

impl Load {
    fn start(proxy: SocketAddr) -> Self {
        const AUTHORITIES: [&str; 4] = [
            "reviews.shop",
            "reviews.shop:9080",
            "reviews.shop.svc",
            "reviews.shop.svc.cluster.local:9080",
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..6 {
            let stop = stop.clone();
            let host = AUTHORITIES[i % AUTHORITIES.len()];
            if i % 2 == 0 {
                clients.spawn(http1_load(proxy, host, stop));
            } else {
                clients.spawn(h2c_load(proxy, host, stop));
            }
        }
        Self { stop, clients }
    }

    /// Stops the clients; the requests each endpoint answered, or the first failure.
    async fn finish(mut self) -> BTreeMap<String, usize> {
        self.stop.store(true, Ordering::Release);
        let mut counts = BTreeMap::new();
        while let Some(result) = self.clients.join_next().await {
            for name in result.expect("client task").expect("no failed request") {
                *counts.entry(name).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// Checks one answer; the endpoint that gave it.
fn answered(reply: &weft_tests::Reply, n: usize, host: &str) -> Result<String, String> {
    if reply.status != 200 {
        return Err(format!(
            "request {n} to {host}: {} {}",
            reply.status,
            reply.text()
        ));
    }
    Ok(reply.header(UPSTREAM_HEADER).unwrap_or("?").to_owned())
}

/// HTTP/1.1 (pooled connections), the authority in `Host`.
async fn http1_load(
    proxy: SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let reply = get_with(Proto::Http1, proxy, "/", &[("host", host)])
            .await
            .map_err(|e| format!("request {} to {host}: {e:#}", seen.len()))?;
        seen.push(answered(&reply, seen.len(), host)?);
    }
    Ok(seen)
}

/// One h2c connection, the authority in `:authority`.
async fn h2c_load(
    proxy: SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
) -> Result<Vec<String>, String> {
    let stream = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut seen = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let request = http::Request::get(format!("http://{host}/"))
            .body(weft_tests::empty())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = sender.send_request(request).await?;
            weft_tests::Reply::read(response).await
        };
        let reply = tokio::time::timeout(WAIT, exchange)
            .await
            .map_err(|_| format!("request {} to {host}: no answer", seen.len()))?
            .map_err(|e| format!("request {} to {host}: {e:#}", seen.len()))?;
        seen.push(answered(&reply, seen.len(), host)?);
    }
    Ok(seen)
}

/// Waits until `upstream` has answered `more` requests beyond what it had.
async fn gets_traffic(upstream: &ScriptedUpstream, more: usize) {
    let from = upstream.requests();
    let deadline = tokio::time::Instant::now() + WAIT;
    while upstream.requests() < from + more {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} got no traffic",
            upstream.name()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that `upstream` gets no new request for a while (once a change that took it out
/// has been applied; the requests sent before may still arrive for a moment).
async fn gets_no_new_traffic(upstream: &ScriptedUpstream) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = upstream.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        upstream.requests(),
        settled,
        "{} still gets requests",
        upstream.name()
    );
    assert_eq!(upstream.in_flight(), 0, "its requests were answered");
}

async fn upstreams(n: usize) -> Vec<ScriptedUpstream> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(
            ScriptedUpstream::start(Behaviour::Delay(HOLD))
                .await
                .expect("upstream"),
        );
    }
    all
}

/// Waits until proxy `name` has ACKed the control plane's current services.
async fn applied(cp: &TestControlPlane, name: &str) {
    let version = cp.control_plane.services_version();
    cp.wait_for_proxy(name, WAIT, |p| {
        p.discovery.as_ref().is_some_and(|d| d.acked >= version)
    })
    .await
    .expect("the proxy ACKs the update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_endpoints_come_and_go_under_load_without_a_failed_request() {
    let ups = upstreams(4).await;
    let [a, b, c, d] = [&ups[0], &ups[1], &ups[2], &ups[3]];
    let cp = TestControlPlane::start().await.expect("control plane");
    let write = |endpoints: &[TestEndpoint]| {
        cp.write(
            "reviews.yaml",
            service_yaml("shop", "reviews", &[("http", 9080)], endpoints),
        )
        .expect("write");
    };
    write(&[TestEndpoint::new(a.addr()), TestEndpoint::new(b.addr())]);
    cp.wait_until(WAIT, "reviews published", |c| {
        c.services().contains_key("shop/reviews")
    })
    .await
    .expect("published");
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config(cp.addr(), "shop-0", state.path()))
        .await
        .expect("proxy");
    applied(&cp, "shop-0").await;

    let load = Load::start(proxy.listener("outbound"));
    gets_traffic(a, 20).await;
    gets_traffic(b, 20).await;

    // Added: C takes its share.
    write(&[
        TestEndpoint::new(a.addr()),
        TestEndpoint::new(b.addr()),
        TestEndpoint::new(c.addr()),
    ]);
    applied(&cp, "shop-0").await;
    gets_traffic(c, 20).await;

    // Terminating (serving, not ready): no new requests while others are left.
    write(&[
        TestEndpoint::new(a.addr()).terminating(),
        TestEndpoint::new(b.addr()),
        TestEndpoint::new(c.addr()),
    ]);
    applied(&cp, "shop-0").await;
    gets_no_new_traffic(a).await;

    // Removed, and one added in the same update.
    write(&[TestEndpoint::new(c.addr()), TestEndpoint::new(d.addr())]);
    applied(&cp, "shop-0").await;
    gets_traffic(d, 20).await;
    gets_no_new_traffic(b).await;
    gets_traffic(c, 20).await;

    let counts = load.finish().await;
    let total: usize = counts.values().sum();
    assert!(total >= 200, "only {total} requests: {counts:?}");
    for upstream in &ups {
        assert!(
            counts.get(upstream.name()).copied().unwrap_or(0) > 0,
            "{} answered nothing: {counts:?}",
            upstream.name()
        );
    }

    let series = "upstream=\"reviews.shop:9080\"";
    let metrics = weft_tests::scrape(proxy.admin()).await.expect("metrics");
    assert!(metrics.text.contains(series), "{}", metrics.text);

    // The whole service gone: a 503 that says so, and its metric series go with it.
    std::fs::remove_file(cp.dir().join("reviews.yaml")).expect("remove");
    cp.wait_until(WAIT, "reviews removed", |c| c.services().is_empty())
        .await
        .expect("removed");
    applied(&cp, "shop-0").await;
    let reply = get_with(
        Proto::Http1,
        proxy.listener("outbound"),
        "/",
        &[("host", "reviews.shop")],
    )
    .await
    .expect("reply");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("reviews.shop"), "{}", reply.text());
    let metrics = weft_tests::scrape(proxy.admin()).await.expect("metrics");
    assert!(!metrics.text.contains(series), "{}", metrics.text);
}

/// One EndpointSlice per endpoint (each test upstream listens on its own port; a slice's
/// ports are shared by its endpoints).
fn slice(upstream: &ScriptedUpstream, ready: bool) -> serde_json::Value {
    let endpoint = TestEndpoint::new(upstream.addr());
    let endpoint = if ready {
        endpoint
    } else {
        endpoint.terminating()
    };
    k8s_endpoint_slice(
        "shop",
        "reviews",
        &format!("reviews-{}", upstream.addr().port()),
        &[("http", upstream.addr().port())],
        &[endpoint],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_endpoint_slices_come_and_go_under_load_without_a_failed_request() {
    let ups = upstreams(3).await;
    let [a, b, c] = [&ups[0], &ups[1], &ups[2]];
    let api = FakeApiServer::start().await;
    api.apply_object(k8s_service("shop", "reviews", &[("http", 9080, None)]));
    api.apply_object(slice(a, true));
    api.apply_object(slice(b, true));
    let cp = TestControlPlane::start_kubernetes(api.client(), None)
        .await
        .expect("control plane");
    cp.wait_until(Duration::from_secs(20), "reviews discovered", |c| {
        c.services()
            .get("shop/reviews")
            .is_some_and(|s| s.endpoints.len() == 2)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}: {:?} {:?}",
            cp.control_plane.services(),
            cp.control_plane.source_errors()
        )
    });
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config(cp.addr(), "shop-1", state.path()))
        .await
        .expect("proxy");
    applied(&cp, "shop-1").await;

    let load = Load::start(proxy.listener("outbound"));
    gets_traffic(a, 20).await;
    gets_traffic(b, 20).await;

    // A pod scales up: a new slice.
    api.apply_object(slice(c, true));
    gets_traffic(c, 20).await;

    // A pod terminates: serving, not ready; then its slice goes.
    api.apply_object(slice(a, false));
    cp.wait_until(WAIT, "a terminating", |cp| {
        cp.services()["shop/reviews"]
            .endpoints
            .iter()
            .any(|e| !e.ready)
    })
    .await
    .expect("terminating");
    applied(&cp, "shop-1").await;
    gets_no_new_traffic(a).await;
    assert!(api.delete_object(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "shop",
        &format!("reviews-{}", a.addr().port()),
    ));
    cp.wait_until(WAIT, "a removed", |cp| {
        cp.services()["shop/reviews"].endpoints.len() == 2
    })
    .await
    .expect("removed");
    applied(&cp, "shop-1").await;
    gets_traffic(b, 20).await;
    gets_traffic(c, 20).await;

    let counts = load.finish().await;
    let total: usize = counts.values().sum();
    assert!(total >= 150, "only {total} requests: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_sends_to_a_subset_of_a_discovered_service() {
    let ups = upstreams(2).await;
    let [v1, v2] = [&ups[0], &ups[1]];
    let cp = TestControlPlane::start().await.expect("control plane");
    let mut yaml = service_yaml(
        "shop",
        "reviews",
        &[("http", 9080)],
        &[
            TestEndpoint::new(v1.addr()).label("version", "v1"),
            TestEndpoint::new(v2.addr()).label("version", "v2"),
        ],
    );
    yaml.push_str("  trafficPolicy: {subsets: {v2: {version: v2}}}\n");
    cp.write("reviews.yaml", yaml).expect("write");
    cp.wait_until(WAIT, "reviews published", |c| {
        c.services().contains_key("shop/reviews")
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", cp.control_plane.source_errors()));
    let router = format!(
        "{{ name: router, module: {:?}, config: {} }}",
        weft_tests::guests::HEADER_ROUTER,
        serde_json::json!({ "rules": [{
            "match": { "headers": [{ "name": "x-canary", "exact": "yes" }] },
            "upstream": "reviews.shop@v2"
        }] })
    );
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config_with(
        cp.addr(),
        "shop-2",
        state.path(),
        &router,
    ))
    .await
    .expect("proxy");
    applied(&cp, "shop-2").await;
    let addr = proxy.listener("outbound");

    let mut by_authority = BTreeMap::<String, usize>::new();
    for _ in 0..20 {
        let reply = get_with(Proto::Http1, addr, "/", &[("host", "reviews.shop")])
            .await
            .expect("reply");
        let who = answered(&reply, 0, "reviews.shop").expect("200");
        *by_authority.entry(who).or_default() += 1;
        let canary = get_with(
            Proto::Http1,
            addr,
            "/",
            &[("host", "reviews.shop"), ("x-canary", "yes")],
        )
        .await
        .expect("reply");
        assert_eq!(
            answered(&canary, 0, "reviews.shop").expect("200"),
            v2.name(),
            "the filter's subset"
        );
    }
    assert_eq!(
        by_authority.len(),
        2,
        "both versions by authority: {by_authority:?}"
    );
}

/// An update the proxy cannot use (published straight into the control plane's catalog, past
/// its sources' checks, as a buggy or hostile control plane could send it) is refused whole:
/// a NACK naming the service and the reason, and requests keep going where they went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_proxy_cannot_use_is_nacked_and_routing_stays() {
    use weft_api::v1;

    let ups = upstreams(1).await;
    let cp = TestControlPlane::start().await.expect("control plane");
    let service = |address: &str, port: u32, policy_json: &str| {
        Arc::new(v1::Service {
            namespace: "shop".to_owned(),
            name: "reviews".to_owned(),
            ports: vec![v1::ServicePort {
                name: "http".to_owned(),
                port: 9080,
                protocol: String::new(),
            }],
            endpoints: vec![v1::ServiceEndpoint {
                address: address.to_owned(),
                ports: [("http".to_owned(), port)].into(),
                weight: 1,
                ready: true,
                ..v1::ServiceEndpoint::default()
            }],
            policy_json: policy_json.to_owned(),
            origin: "test".to_owned(),
        })
    };
    let publish = |service: Arc<v1::Service>| {
        cp.control_plane
            .publish_services([("shop/reviews".to_owned(), service)].into());
    };
    let good = ups[0].addr();
    publish(service(&good.ip().to_string(), u32::from(good.port()), ""));
    let state = tempfile::tempdir().expect("state dir");
    let proxy = start_proxy(&proxy_config(cp.addr(), "shop-3", state.path()))
        .await
        .expect("proxy");
    applied(&cp, "shop-3").await;
    let addr = proxy.listener("outbound");

    for (bad, reason) in [
        (service("backend.example", 80, ""), "not an IP address"),
        (service(&good.ip().to_string(), 70_000, ""), "70000"),
        (
            service(
                &good.ip().to_string(),
                u32::from(good.port()),
                r#"{"retries": {"attempts": 99}}"#,
            ),
            "retries.attempts",
        ),
    ] {
        publish(bad);
        let version = cp.control_plane.services_version();
        let status = cp
            .wait_for_proxy("shop-3", WAIT, |p| {
                p.discovery.as_ref().is_some_and(|d| d.nacked >= version)
            })
            .await
            .expect("a NACK");
        let errors = status.discovery.expect("discovery status").errors;
        assert!(
            errors
                .iter()
                .any(|e| e.service == "shop/reviews" && e.message.contains(reason)),
            "{reason}: {errors:?}"
        );
        let reply = get_with(Proto::Http1, addr, "/", &[("host", "reviews.shop")])
            .await
            .expect("reply");
        assert_eq!(
            answered(&reply, 0, "reviews.shop").expect("still routed"),
            ups[0].name()
        );
    }
    let metrics = weft_tests::scrape(proxy.admin()).await.expect("metrics");
    assert_eq!(
        metrics.value(
            "weft_config_updates_total",
            &[("source", "discovery"), ("result", "rejected")]
        ),
        Some(3.0),
        "{}",
        metrics.text
    );
}
