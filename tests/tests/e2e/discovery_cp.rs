//! Service discovery, the control plane's side: `Service` files and Kubernetes `Service` +
//! `EndpointSlice` objects reach `Watch` streams whole, then as changes only; ACK/NACK in
//! `/proxies`; callers checked as on `Subscribe`; bad input keeps the last good version.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use weft_api::v1::filter_distribution_client::FilterDistributionClient;
use weft_api::v1::{Hello, ProxyIdentity, SubscribeRequest, subscribe_request::Kind};
use weft_controlplane::admin;
use weft_tests::control_plane::{TestCa, TestControlPlane};
use weft_tests::discovery::{
    TestEndpoint, endpoints_of, k8s_endpoint_slice, k8s_pod, k8s_service, service_names,
    service_yaml, watch_services, watch_services_tls,
};
use weft_tests::kube_fake::FakeApiServer;

const WAIT: Duration = Duration::from_secs(10);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn reviews(endpoints: &[u16]) -> String {
    let endpoints: Vec<TestEndpoint> = endpoints
        .iter()
        .map(|p| TestEndpoint::new(addr(*p)))
        .collect();
    service_yaml("shop", "reviews", &[("http", 9080)], &endpoints)
}

#[tokio::test]
async fn directory_services_arrive_whole_then_only_what_changed() {
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.write("reviews.yaml", reviews(&[18080])).expect("write");
    cp.write(
        "ratings.yaml",
        service_yaml(
            "shop",
            "ratings",
            &[("grpc", 9090)],
            &[TestEndpoint::new(addr(19090))
                .weight(3)
                .label("version", "v2")],
        ),
    )
    .expect("write");
    cp.wait_until(WAIT, "both published", |c| c.services().len() == 2)
        .await
        .expect("published");
    let mut watch = watch_services(cp.addr(), ("shop", "proxy-1"), &[])
        .await
        .expect("watch");
    let full = watch.next().await.expect("full update");
    assert!(full.full);
    assert_eq!(service_names(&full), ["shop/ratings", "shop/reviews"]);
    let ratings = full
        .services
        .iter()
        .find(|s| s.name == "ratings")
        .expect("ratings");
    assert_eq!(ratings.endpoints[0].weight, 3);
    assert_eq!(ratings.endpoints[0].labels["version"], "v2");
    watch.ack(full.version).await.expect("ack");

    cp.write("reviews.yaml", reviews(&[18080, 18081]))
        .expect("write");
    let added = watch.next().await.expect("update");
    assert!(!added.full);
    assert!(added.version > full.version);
    assert_eq!(
        service_names(&added),
        ["shop/reviews"],
        "only the changed service"
    );
    assert_eq!(
        endpoints_of(&added.services[0], "http"),
        [
            ("127.0.0.1:18080".to_owned(), true),
            ("127.0.0.1:18081".to_owned(), true)
        ]
    );
    assert!(added.removed.is_empty());
    watch.ack(added.version).await.expect("ack");

    std::fs::remove_file(cp.dir().join("ratings.yaml")).expect("remove");
    let removed = watch.next().await.expect("update");
    assert!(removed.version > added.version);
    assert!(removed.services.is_empty());
    assert_eq!(removed.removed, ["shop/ratings"]);

    let status = cp
        .wait_for_proxy("proxy-1", WAIT, |p| {
            p.discovery
                .as_ref()
                .is_some_and(|d| d.acked == added.version)
        })
        .await
        .expect("ack recorded");
    let discovery = status.discovery.expect("discovery status");
    assert_eq!(discovery.sent_version, removed.version);
    assert_eq!(discovery.services, 1);
}

#[tokio::test]
async fn a_watch_gets_only_the_namespaces_it_asked_for() {
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.write("reviews.yaml", reviews(&[18080])).expect("write");
    cp.write(
        "other.yaml",
        service_yaml(
            "other",
            "billing",
            &[("http", 80)],
            &[TestEndpoint::new(addr(18090))],
        ),
    )
    .expect("write");
    cp.wait_until(WAIT, "both published", |c| c.services().len() == 2)
        .await
        .expect("published");
    let mut watch = watch_services(cp.addr(), ("shop", "p"), &["shop"])
        .await
        .expect("watch");
    let full = watch.next().await.expect("full");
    assert_eq!(service_names(&full), ["shop/reviews"]);

    let before = cp.control_plane.services_version();
    cp.write(
        "other.yaml",
        service_yaml(
            "other",
            "billing",
            &[("http", 80)],
            &[TestEndpoint::new(addr(18091))],
        ),
    )
    .expect("write");
    cp.wait_for_services_version(before, WAIT)
        .await
        .expect("republished");
    watch
        .quiet_for(Duration::from_millis(300))
        .await
        .expect("nothing for another namespace");

    cp.write("reviews.yaml", reviews(&[18082])).expect("write");
    let update = watch.next().await.expect("update");
    assert_eq!(service_names(&update), ["shop/reviews"]);

    let refused = watch_services(cp.addr(), ("shop", "q"), &["Not_A_Label"]).await;
    let status = match refused {
        Ok(mut watch) => watch.error().await.expect("refused"),
        Err(e) => e.downcast::<tonic::Status>().expect("a gRPC status"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_nack_shows_in_proxies_with_its_reasons() {
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.write("reviews.yaml", reviews(&[18080])).expect("write");
    cp.wait_until(WAIT, "reviews published", |c| {
        c.services().contains_key("shop/reviews")
    })
    .await
    .expect("published");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = admin::serve(&cp.control_plane, listener, None).expect("admin");
    let mut watch = watch_services(cp.addr(), ("shop", "proxy-n"), &[])
        .await
        .expect("watch");
    let full = watch.next().await.expect("full");
    watch
        .nack(
            full.version,
            &[("shop/reviews", "subset v3 names no endpoint")],
        )
        .await
        .expect("nack");
    cp.wait_for_proxy("proxy-n", WAIT, |p| {
        p.discovery
            .as_ref()
            .is_some_and(|d| d.nacked == full.version)
    })
    .await
    .expect("nack recorded");
    let reply = weft_tests::get(admin.local_addr(), "/proxies", &[])
        .await
        .expect("/proxies");
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    let proxy = body["proxies"]
        .as_array()
        .expect("proxies")
        .iter()
        .find(|p| p["identity"]["name"] == "proxy-n")
        .expect("the proxy")
        .clone();
    let discovery = &proxy["discovery"];
    assert_eq!(discovery["nacked"], full.version, "{proxy:#}");
    assert_eq!(discovery["acked"], 0);
    assert_eq!(discovery["connected"], true);
    assert_eq!(discovery["errors"][0]["service"], "shop/reviews");
    assert_eq!(
        discovery["errors"][0]["message"],
        "subset v3 names no endpoint"
    );
    assert_eq!(body["servicesVersion"], full.version);
    admin.shutdown().await;
}

#[tokio::test]
async fn a_caller_without_the_right_certificate_is_refused() {
    let server_ca = TestCa::new("server CA").expect("CA");
    let client_ca = TestCa::new("client CA").expect("CA");
    let mut tls = server_ca.server_tls().expect("server TLS");
    tls.client_ca = Some(client_ca.ca_file().expect("CA file"));
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("reviews.yaml"), reviews(&[18080])).expect("write");
    let cp = TestControlPlane::start_with_dir(
        "127.0.0.1:0".parse().expect("addr"),
        Some(&tls),
        Some(dir),
    )
    .await
    .expect("control plane");
    let certs = client_ca
        .client("proxy-1", "shop", &server_ca)
        .expect("client certs");

    let no_cert = match watch_services_tls(cp.addr(), &certs, false, ("shop", "proxy-1"), &[]).await
    {
        Ok(mut watch) => watch.error().await.expect("refused"),
        Err(e) => e.downcast::<tonic::Status>().expect("a gRPC status"),
    };
    // With a client CA and no mesh CA the handshake itself demands a certificate; behind a
    // mesh CA (optional certificates, for `Certify`) the Watch answers UNAUTHENTICATED.
    assert!(
        no_cert.code() == tonic::Code::Unauthenticated
            || format!("{no_cert:?}").contains("CertificateRequired"),
        "{no_cert:?}"
    );

    let other =
        match watch_services_tls(cp.addr(), &certs, true, ("shop", "someone-else"), &[]).await {
            Ok(mut watch) => watch.error().await.expect("refused"),
            Err(e) => e.downcast::<tonic::Status>().expect("a gRPC status"),
        };
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    assert!(
        cp.proxy("someone-else").is_none(),
        "a refused caller leaves no status"
    );

    let mut watch = watch_services_tls(cp.addr(), &certs, true, ("shop", "proxy-1"), &[])
        .await
        .expect("watch");
    let full = watch.next().await.expect("full");
    assert_eq!(service_names(&full), ["shop/reviews"]);
}

#[tokio::test]
async fn bad_service_files_name_the_line_and_keep_the_last_good_version() {
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.write("reviews.yaml", reviews(&[18080])).expect("write");
    cp.wait_until(WAIT, "reviews published", |c| {
        c.services().contains_key("shop/reviews")
    })
    .await
    .expect("published");
    let good = cp.control_plane.services_version();
    let mut watch = watch_services(cp.addr(), ("shop", "p"), &[])
        .await
        .expect("watch");
    watch.next().await.expect("full");

    cp.write(
        "reviews.yaml",
        "kind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  ports: [{name: http, port: 9080}]\n  endpoints:\n    - address: 127.0.0.1\n      ports: {htp: 18081}\n",
    )
    .expect("write");
    cp.write("copy.yaml", reviews(&[18099])).expect("write");
    let deadline = tokio::time::Instant::now() + WAIT;
    let errors = loop {
        let errors = cp.source_errors();
        if errors.len() >= 2 || tokio::time::Instant::now() > deadline {
            break errors;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let joined = errors.join("\n");
    assert!(
        joined.contains("reviews.yaml:7:")
            && joined
                .contains("spec.endpoints[0].ports.htp: the service has no port named \"htp\""),
        "{joined}"
    );
    assert!(
        joined.contains("service shop/reviews is also defined in"),
        "{joined}"
    );
    assert_eq!(
        cp.control_plane.services_version(),
        good,
        "nothing published"
    );
    watch
        .quiet_for(Duration::from_millis(200))
        .await
        .expect("no update");
    let kept = &cp.control_plane.services()["shop/reviews"];
    assert_eq!(
        endpoints_of(kept, "http"),
        [("127.0.0.1:18080".to_owned(), true)]
    );

    std::fs::remove_file(cp.dir().join("copy.yaml")).expect("remove");
    cp.write("reviews.yaml", reviews(&[18081])).expect("write");
    let fixed = watch.next().await.expect("update");
    assert_eq!(
        endpoints_of(&fixed.services[0], "http"),
        [("127.0.0.1:18081".to_owned(), true)]
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cp.source_errors().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cp.source_errors().is_empty(), "{:?}", cp.source_errors());
}

#[tokio::test]
async fn filters_are_not_resent_when_only_endpoints_change() {
    let cp = TestControlPlane::start().await.expect("control plane");
    cp.write("noop.wasm", b"\0asm not really").expect("module");
    cp.write(
        "noop.yaml",
        weft_tests::control_plane::definition("noop", "noop.wasm", "{}", ""),
    )
    .expect("filter");
    cp.write("reviews.yaml", reviews(&[18080])).expect("write");
    cp.wait_until(WAIT, "the filter and the service published", |c| {
        c.catalog().filters.len() == 1 && c.services().contains_key("shop/reviews")
    })
    .await
    .expect("published");
    let filters_version = cp.control_plane.version();

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cp.addr()))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(SubscribeRequest {
        kind: Some(Kind::Hello(Hello {
            identity: Some(ProxyIdentity {
                name: "p".to_owned(),
                namespace: "default".to_owned(),
                labels: Default::default(),
            }),
            module_digests: Vec::new(),
            serving_version: 0,
        })),
    })
    .await
    .expect("hello");
    let mut snapshots = FilterDistributionClient::new(channel.clone())
        .subscribe(ReceiverStream::new(rx))
        .await
        .expect("subscribe")
        .into_inner();
    let first = tokio::time::timeout(WAIT, snapshots.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("snapshot");
    assert_eq!(first.filters.len(), 1, "{first:?}");
    let mut watch = weft_tests::discovery::watch_on(channel, ("default", "p"), &[])
        .await
        .expect("watch");
    watch.next().await.expect("full");

    cp.write("reviews.yaml", reviews(&[18080, 18081]))
        .expect("write");
    let update = watch.next().await.expect("endpoint update");
    assert_eq!(service_names(&update), ["shop/reviews"]);
    assert_eq!(
        cp.control_plane.version(),
        filters_version,
        "the filter catalog was not republished"
    );
    let resent = tokio::time::timeout(Duration::from_millis(300), snapshots.message()).await;
    assert!(
        resent.is_err(),
        "no snapshot for an endpoint change: {resent:?}"
    );
    drop(tx);
}

fn serving_slice(endpoints: &[TestEndpoint]) -> Value {
    k8s_endpoint_slice(
        "shop",
        "reviews",
        "reviews-abc",
        &[("http", 18080)],
        endpoints,
    )
}

#[tokio::test]
async fn kubernetes_services_and_endpoint_slices_are_discovered() {
    let api = FakeApiServer::start().await;
    api.apply_object(k8s_pod("shop", "reviews-v2", &[("version", "v2")]));
    api.apply_object(k8s_service(
        "shop",
        "reviews",
        &[("http", 9080, Some("grpc"))],
    ));
    api.apply_object(serving_slice(&[
        TestEndpoint::new("10.0.0.1:1".parse().expect("addr"))
            .target("reviews-v2")
            .zone("zone-a"),
        TestEndpoint::new("10.0.0.2:1".parse().expect("addr")).terminating(),
        TestEndpoint::new("10.0.0.3:1".parse().expect("addr")).not_serving(),
    ]));
    let mut external = k8s_service("shop", "outside", &[("http", 80, None)]);
    external["spec"] = serde_json::json!({"type": "ExternalName", "externalName": "example.com"});
    api.apply_object(external);
    let cp = TestControlPlane::start_kubernetes(api.client(), None)
        .await
        .expect("control plane");
    let mut watch = watch_services(cp.addr(), ("shop", "p"), &["shop"])
        .await
        .expect("watch");
    let full = watch
        .next_within(Duration::from_secs(20))
        .await
        .expect("full");
    assert!(full.full);
    assert_eq!(
        service_names(&full),
        ["shop/reviews"],
        "ExternalName is skipped"
    );
    let service = &full.services[0];
    assert_eq!(service.ports[0].port, 9080);
    assert_eq!(service.ports[0].protocol, "http2", "appProtocol grpc");
    assert_eq!(service.origin, "Service shop/reviews");
    assert_eq!(
        endpoints_of(service, "http"),
        [
            ("10.0.0.1:18080".to_owned(), true),
            ("10.0.0.2:18080".to_owned(), false)
        ],
        "terminating sent as not ready, not-serving left out"
    );
    let v2 = &service.endpoints[0];
    assert_eq!(
        v2.labels.get("version").map(String::as_str),
        Some("v2"),
        "the Pod's labels"
    );
    assert_eq!(v2.zone, "zone-a");
    assert_eq!(v2.target, "Pod shop/reviews-v2");
    watch.ack(full.version).await.expect("ack");

    // A slice change: one update with that service only.
    api.apply_object(serving_slice(&[
        TestEndpoint::new("10.0.0.1:1".parse().expect("addr")).target("reviews-v2"),
        TestEndpoint::new("10.0.0.4:1".parse().expect("addr")),
    ]));
    let update = watch.next().await.expect("update");
    assert!(!update.full && update.version > full.version);
    assert_eq!(
        endpoints_of(&update.services[0], "http"),
        [
            ("10.0.0.1:18080".to_owned(), true),
            ("10.0.0.4:18080".to_owned(), true)
        ]
    );

    // A bad policy annotation keeps the last good version and says where.
    let mut annotated = k8s_service("shop", "reviews", &[("http", 9080, Some("grpc"))]);
    annotated["metadata"]["annotations"] =
        serde_json::json!({"weft.dev/traffic-policy": "retries:\n  attempts: 99\n"});
    api.apply_object(annotated.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    let errors = loop {
        let errors = cp.control_plane.source_errors();
        if !errors.is_empty() || tokio::time::Instant::now() > deadline {
            break errors;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .message
            .starts_with("Service shop/reviews annotation weft.dev/traffic-policy:2:")
            && errors[0].message.contains("retries.attempts"),
        "{errors:?}"
    );
    watch
        .quiet_for(Duration::from_millis(200))
        .await
        .expect("nothing sent");
    annotated["metadata"]["annotations"] =
        serde_json::json!({"weft.dev/traffic-policy": "load_balancer: least_request\n"});
    api.apply_object(annotated);
    let fixed = watch.next().await.expect("update");
    assert!(
        fixed.services[0].policy_json.contains("least_request"),
        "{:?}",
        fixed.services[0]
    );
    assert!(cp.control_plane.source_errors().is_empty());

    // Deleting the service removes it.
    assert!(api.delete_object("v1", "Service", "shop", "reviews"));
    let gone = watch.next().await.expect("update");
    assert_eq!(gone.removed, ["shop/reviews"]);
}
