//! The Kubernetes source: `WasmFilter` resources on an API server, the controller resolving
//! them (fetch, verify, `configure` in the control plane's sandbox), real proxies enforcing
//! them, and the status written back with server-side apply.
//!
//! CI has no cluster: these tests run against [`FakeApiServer`], an in-memory API server
//! speaking the real protocol over HTTP on `127.0.0.1:0` (list, watch with bookmarks and 410
//! Gone, server-side apply on the status subresource). The same scenario against a real
//! cluster is [`a_real_cluster_applies_rolls_and_reports`], opt-in through `KUBECONFIG`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::{greeting, wait_for_greeting};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use weft_controlplane::ControlPlane;
use weft_controlplane::catalog::sha256_hex;
use weft_controlplane::fetch::{self, FetchOptions};
use weft_controlplane::server::{self, ServerHandle};
use weft_controlplane::source::kubernetes::{KubernetesOptions, KubernetesSource};
use weft_tests::kube_fake::FakeApiServer;
use weft_tests::{TestProxy, Upstream, guests, start_proxy};

// A real OCI registry (Debian's docker-registry), shared with the fetcher's tests.
#[path = "../../../controlplane/tests/support/registry.rs"]
mod registry;

const WAIT: Duration = Duration::from_secs(15);
const API_VERSION: &str = "weft.dev/v1alpha1";
const KIND: &str = "WasmFilter";

/// A fake API server, a control plane watching it, and its gRPC server.
struct Cluster {
    api: FakeApiServer,
    control_plane: ControlPlane,
    grpc: ServerHandle,
    _source: KubernetesSource,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(FetchOptions::default()).await
    }

    /// [`start`](Self::start), fetching modules with `fetch`.
    async fn start_with(fetch: FetchOptions) -> Self {
        let api = FakeApiServer::start().await;
        let options = KubernetesOptions {
            fetch,
            ..Self::options()
        };
        Self::start_on(api, "127.0.0.1:0".parse().expect("address"), options).await
    }

    /// The source's options in these tests: quick retries and status writes.
    fn options() -> KubernetesOptions {
        KubernetesOptions {
            retry: Duration::from_millis(200),
            status_delay: Duration::from_millis(20),
            ..KubernetesOptions::default()
        }
    }

    /// A control plane watching `api`, serving gRPC on `address`.
    async fn start_on(api: FakeApiServer, address: SocketAddr, options: KubernetesOptions) -> Self {
        let control_plane = ControlPlane::new("weft-system");
        let listener = TcpListener::bind(address).await.expect("bind");
        let grpc = server::serve(&control_plane, listener, None, None)
            .await
            .expect("gRPC server");
        let source = KubernetesSource::start(api.client(), control_plane.clone(), options)
            .expect("kubernetes source");
        Self {
            api,
            control_plane,
            grpc,
            _source: source,
        }
    }

    /// Stops the control plane (its source and gRPC server); the API server stays. Returns it
    /// and the gRPC address, to start another control plane on.
    async fn stop(self) -> (FakeApiServer, SocketAddr) {
        let Self {
            api,
            control_plane: _,
            grpc,
            _source,
        } = self;
        drop(_source);
        let address = grpc.local_addr();
        grpc.shutdown().await;
        (api, address)
    }

    /// A proxy in namespace `default` labelled `app: shop`, subscribed to this control plane.
    async fn proxy(&self, upstream: SocketAddr, name: &str, state: &Path) -> TestProxy {
        self.proxy_labelled(upstream, name, "{ app: shop }", state)
            .await
    }

    /// A proxy in namespace `default` with `labels` (a YAML flow mapping).
    async fn proxy_labelled(
        &self,
        upstream: SocketAddr,
        name: &str,
        labels: &str,
        state: &Path,
    ) -> TestProxy {
        let address = format!("http://{}", self.grpc.local_addr());
        start_proxy(&format!(
            "{}{}",
            crate::one_route(upstream, &[]),
            weft_tests::control_plane::proxy_section(&address, name, labels, state, None)
        ))
        .await
        .expect("proxy")
    }

    /// Stores `module` in ConfigMap `default/modules` under `key`.
    fn put_module(&self, key: &str, module: &[u8]) {
        let mut binary = serde_json::Map::new();
        if let Some(existing) = self.api.object("v1", "ConfigMap", "default", "modules")
            && let Some(Value::Object(data)) = existing.get("binaryData")
        {
            binary.extend(data.clone());
        }
        binary.insert(key.to_owned(), Value::String(base64(module)));
        self.api.apply_object(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "modules", "namespace": "default" },
            "binaryData": binary,
        }));
    }

    /// Creates or replaces WasmFilter `default/<name>` with `spec`.
    fn apply_filter(&self, name: &str, spec: Value) -> Value {
        self.api.apply_object(json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": { "name": name, "namespace": "default" },
            "spec": spec,
        }))
    }

    /// Waits until WasmFilter `default/<name>` has a status for which `pred` holds.
    async fn wait_for_status(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let object = self
            .api
            .wait_for_object(
                API_VERSION,
                KIND,
                "default",
                name,
                |o| pred(&o["status"]),
                WAIT,
            )
            .await;
        object["status"].clone()
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A spec for the config-echo guest from ConfigMap key `key`: responses get
/// `x-greeting: <greeting>`; an empty greeting is refused by the filter's `configure`.
fn greeter(key: &str, sha256: &str, greeting: &str) -> Value {
    json!({
        "module": { "configMap": { "name": "modules", "key": key } },
        "sha256": sha256,
        "selector": { "matchLabels": { "app": "shop" } },
        "config": { "greeting": greeting },
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn ready_because(status: &Value, ready: &str, reason: &str) -> bool {
    let c = condition(status, "Ready");
    c["status"] == ready && c["reason"] == reason
}

#[tokio::test]
async fn a_wasm_filter_rolls_out_to_its_proxies_and_the_status_reports_it() {
    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start().await;
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    cluster.put_module("greeter.wasm", &module);
    let state = tempfile::tempdir().expect("state");
    let proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;

    // Create: the proxy enforces it and the status says every selected proxy runs it.
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "hello"));
    wait_for_greeting(proxy.addr(), "hello").await;
    let status = cluster
        .wait_for_status("greeter", |s| ready_because(s, "True", "RolledOut"))
        .await;
    assert_eq!(status["observedGeneration"], 1, "{status:#}");
    assert_eq!(status["servingGeneration"], 1, "{status:#}");
    assert_eq!(status["servingSha256"], sha.as_str(), "{status:#}");
    assert_eq!(
        status["rollout"],
        json!({ "selected": 1, "updated": 1, "rejected": 0 }),
        "{status:#}"
    );
    assert_eq!(condition(&status, "Degraded")["status"], "False");

    // The status was written by server-side apply on the status subresource, by our field
    // manager, and only the status: the spec and generation are untouched.
    let patches: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(!patches.is_empty());
    for patch in &patches {
        assert_eq!(
            patch.path, "/apis/weft.dev/v1alpha1/namespaces/default/wasmfilters/greeter/status",
            "{patch:?}"
        );
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{patch:?}"
        );
        assert!(
            patch.query.contains("fieldManager=weft-controlplane")
                && patch.query.contains("force=true"),
            "{patch:?}"
        );
        assert!(patch.body["spec"].is_null(), "{patch:?}");
    }

    // Update: a new config rolls to the proxy as generation 2.
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "hello again"));
    wait_for_greeting(proxy.addr(), "hello again").await;
    let status = cluster
        .wait_for_status("greeter", |s| {
            s["servingGeneration"] == 2 && ready_because(s, "True", "RolledOut")
        })
        .await;
    assert_eq!(status["rollout"]["updated"], 1, "{status:#}");
    let sent = cluster
        .control_plane
        .proxies()
        .into_iter()
        .find(|p| p.identity.name == "shop-0")
        .expect("proxy status");
    assert_eq!(sent.filters.len(), 1, "{sent:#?}");
    assert_eq!(sent.filters[0].generation, 2, "{sent:#?}");

    // Status writes alone never trigger more writes: no patch storm while nothing changes.
    let before = cluster.api.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet: Vec<_> = cluster.api.requests()[before..]
        .iter()
        .filter(|r| r.method == "PATCH")
        .cloned()
        .collect();
    assert!(
        quiet.is_empty(),
        "status patched with nothing changed: {quiet:#?}"
    );

    // Delete: the proxy drops the filter.
    assert!(
        cluster
            .api
            .delete_object(API_VERSION, KIND, "default", "greeter")
    );
    wait_for_greeting(proxy.addr(), "<none>").await;
    assert!(cluster.control_plane.catalog().filters.is_empty());
}

#[tokio::test]
async fn refused_generations_never_reach_a_proxy_and_the_status_says_why() {
    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start().await;
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    cluster.put_module("greeter.wasm", &module);
    let state = tempfile::tempdir().expect("state");
    let proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;

    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "good"));
    wait_for_greeting(proxy.addr(), "good").await;
    cluster
        .wait_for_status("greeter", |s| ready_because(s, "True", "RolledOut"))
        .await;
    let version = cluster.control_plane.version();

    let refused = |generation: i64, reason: &'static str| {
        move |s: &Value| s["observedGeneration"] == generation && ready_because(s, "False", reason)
    };
    let check_still_serving = |status: &Value, needle: &str| {
        let ready = condition(status, "Ready");
        let degraded = condition(status, "Degraded");
        assert_eq!(degraded["status"], "True", "{status:#}");
        assert_eq!(degraded["reason"], ready["reason"], "{status:#}");
        let message = ready["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
        assert!(
            message.contains(&format!(
                "generation 1 (sha256 {}) stays in service",
                &sha[..12]
            )),
            "{message}"
        );
        assert_eq!(status["servingGeneration"], 1, "{status:#}");
    };

    // 2. A config the filter's configure rejects: refused in the control plane's sandbox.
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, ""));
    let status = cluster
        .wait_for_status("greeter", refused(2, "ConfigRejected"))
        .await;
    check_still_serving(&status, "greeting must not be empty");

    // 3. A digest that does not match the module.
    let wrong = sha256_hex(b"some other module");
    cluster.apply_filter("greeter", greeter("greeter.wasm", &wrong, "digest"));
    let status = cluster
        .wait_for_status("greeter", refused(3, "DigestMismatch"))
        .await;
    check_still_serving(&status, &wrong);

    // 4. A ConfigMap key that does not exist.
    cluster.apply_filter("greeter", greeter("missing.wasm", &sha, "missing"));
    let status = cluster
        .wait_for_status("greeter", refused(4, "FetchFailed"))
        .await;
    check_still_serving(&status, "missing.wasm");

    // 5. Bytes that are not a component.
    let garbage = b"\0asm but not a component".to_vec();
    cluster.put_module("garbage.wasm", &garbage);
    cluster.apply_filter(
        "greeter",
        greeter("garbage.wasm", &sha256_hex(&garbage), "x"),
    );
    let status = cluster
        .wait_for_status("greeter", refused(5, "ModuleInvalid"))
        .await;
    check_still_serving(&status, "not a valid WebAssembly component");

    // 6. A spec the API server's schema lets through but the controller refuses.
    let mut spec = greeter("greeter.wasm", &sha, "budget");
    spec["timeBudget"] = json!("60s");
    cluster.apply_filter("greeter", spec);
    let status = cluster
        .wait_for_status("greeter", refused(6, "InvalidSpec"))
        .await;
    check_still_serving(&status, "spec.timeBudget");

    // None of that reached the proxy: it still serves generation 1, and was never sent more.
    assert_eq!(greeting(proxy.addr()).await, "good");
    assert_eq!(
        cluster.control_plane.version(),
        version,
        "catalog republished"
    );
    let catalog = cluster.control_plane.catalog();
    assert_eq!(catalog.filters.len(), 1);
    assert_eq!(catalog.filters[0].generation, 1);
    // The admin endpoint lists the problem too.
    let errors = cluster.control_plane.source_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.file == "WasmFilter default/greeter"),
        "{errors:#?}"
    );

    // 7. A good generation again: it rolls and the filter is healthy.
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "fixed"));
    wait_for_greeting(proxy.addr(), "fixed").await;
    let status = cluster
        .wait_for_status("greeter", |s| {
            s["servingGeneration"] == 7 && ready_because(s, "True", "RolledOut")
        })
        .await;
    assert_eq!(
        condition(&status, "Degraded")["status"],
        "False",
        "{status:#}"
    );
    assert!(cluster.control_plane.source_errors().is_empty());
}

#[tokio::test]
async fn a_failed_fetch_is_retried_until_the_module_appears() {
    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start().await;
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    let state = tempfile::tempdir().expect("state");
    let proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;

    // The ConfigMap does not exist yet.
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "late"));
    let status = cluster
        .wait_for_status("greeter", |s| ready_because(s, "False", "FetchFailed"))
        .await;
    let message = condition(&status, "Ready")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("modules"), "{message}");
    assert!(
        message.contains("no generation of this filter is in service"),
        "{message}"
    );
    assert_eq!(greeting(proxy.addr()).await, "<none>");

    // It appears: the next retry fetches it, without any change to the WasmFilter.
    cluster.put_module("greeter.wasm", &module);
    wait_for_greeting(proxy.addr(), "late").await;
    cluster
        .wait_for_status("greeter", |s| ready_because(s, "True", "RolledOut"))
        .await;
}

#[tokio::test]
async fn a_broken_watch_relists_and_catches_up_including_deletes() {
    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start().await;
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    cluster.put_module("greeter.wasm", &module);
    let state = tempfile::tempdir().expect("state");
    let proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;

    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "before"));
    wait_for_greeting(proxy.addr(), "before").await;

    // The API server forgets the history the watch resumes from (410 Gone) and the
    // connection drops: the watcher lists again and sees the current state.
    cluster.api.compact_history();
    cluster.api.drop_watches();
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "after"));
    wait_for_greeting(proxy.addr(), "after").await;

    cluster.api.compact_history();
    cluster.api.drop_watches();
    assert!(
        cluster
            .api
            .delete_object(API_VERSION, KIND, "default", "greeter")
    );
    wait_for_greeting(proxy.addr(), "<none>").await;
}

#[tokio::test]
async fn an_oci_module_behind_a_pull_secret_rolls_out() {
    registry::install_crypto_provider();
    let ca = registry::new_ca("weft e2e registry CA");
    let registry = registry::Registry::start(registry::RegistrySetup {
        tls: Some(&ca),
        users: vec![("puller", "pa:ss")],
    })
    .await;
    let options = FetchOptions {
        extra_roots_pem: ca.pem.clone().into_bytes(),
        ..FetchOptions::default()
    };
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let reference = format!("oci://{}/filters/greeter:1.0", registry.host);
    let credentials = Some(("puller".to_owned(), "pa:ss".to_owned()));
    fetch::push(&reference, &module, credentials, &options)
        .await
        .unwrap_or_else(|e| panic!("push: {e}\nregistry log:\n{}", registry.log()));

    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start_with(options).await;
    let state = tempfile::tempdir().expect("state");
    let proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;
    let docker_config = json!({ "auths": { registry.host.as_str(): { "username": "puller", "password": "pa:ss" } } });
    cluster.api.apply_object(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "regcred", "namespace": "default" },
        "type": "kubernetes.io/dockerconfigjson",
        "data": { ".dockerconfigjson": base64(docker_config.to_string().as_bytes()) },
    }));
    let mut spec = json!({
        "module": { "oci": reference },
        "selector": { "matchLabels": { "app": "shop" } },
        "config": { "greeting": "from the registry" },
    });

    // Without the pull secret the registry refuses, and the status says what to set.
    cluster.apply_filter("greeter", spec.clone());
    let status = cluster
        .wait_for_status("greeter", |s| ready_because(s, "False", "FetchFailed"))
        .await;
    let message = condition(&status, "Ready")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("spec.pullSecret"), "{message}");

    // With it, the module is pulled (no sha256 given: the layer's digest names it) and rolls.
    spec["pullSecret"] = json!("regcred");
    cluster.apply_filter("greeter", spec);
    wait_for_greeting(proxy.addr(), "from the registry").await;
    let status = cluster
        .wait_for_status("greeter", |s| ready_because(s, "True", "RolledOut"))
        .await;
    assert_eq!(
        status["servingSha256"],
        sha256_hex(&module).as_str(),
        "{status:#}"
    );
}

/// A restarted control plane knows what the statuses say, but not yet what the proxies run:
/// they resubscribe over the next moments. A filter still in service must not turn
/// `Ready=False` or lose its `servingGeneration` meanwhile (a false outage for whoever alerts
/// on `Ready` or runs `kubectl wait`).
#[tokio::test]
async fn a_control_plane_restart_keeps_the_status_of_filters_in_service() {
    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start().await;
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    cluster.put_module("greeter.wasm", &module);
    let state = tempfile::tempdir().expect("state");
    let _proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;
    cluster.apply_filter("steady", greeter("greeter.wasm", &sha, "steady"));
    cluster.apply_filter("changed", greeter("greeter.wasm", &sha, "before"));
    let recorded = cluster
        .wait_for_status("steady", |s| ready_because(s, "True", "RolledOut"))
        .await;
    cluster
        .wait_for_status("changed", |s| ready_because(s, "True", "RolledOut"))
        .await;

    // The control plane goes away; meanwhile `changed` gets generation 2. A new one starts,
    // with a grace period longer than this test, so only reports can change `steady`.
    let (api, address) = cluster.stop().await;
    api.apply_object(json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": { "name": "changed", "namespace": "default" },
        "spec": greeter("greeter.wasm", &sha, "after"),
    }));
    api.clear_requests();
    let options = KubernetesOptions {
        resubscribe_grace: Duration::from_secs(600),
        ..Cluster::options()
    };
    let cluster = Cluster::start_on(api, address, options).await;

    // shop-0 comes back, runs generation 2 of `changed`, and reports it runs both.
    cluster
        .wait_for_status("changed", |s| {
            s["servingGeneration"] == 2 && ready_because(s, "True", "RolledOut")
        })
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cluster.control_plane.proxies().iter().any(|p| {
        p.identity.name == "shop-0"
            && p.connected
            && p.filters.iter().any(|f| f.name == "default/steady")
            && p.last_report
                .as_ref()
                .is_some_and(|r| r.accepted && r.version == p.sent_version)
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "shop-0 never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the status writer catch up with that report.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // `steady` runs as recorded: its status was never written (not `Ready=False`, not
    // without `servingGeneration`), so never said otherwise.
    assert_eq!(status_patches(&cluster.api, "steady"), Vec::<Value>::new());
    let steady = cluster
        .api
        .object(API_VERSION, KIND, "default", "steady")
        .map(|o| o["status"].clone())
        .unwrap_or_default();
    assert_eq!(steady, recorded);
    // `changed` got a new generation: rolling it out is news (Ready=False while it rolls is
    // right), but generation 1 was in service until generation 2 was.
    let changed = status_patches(&cluster.api, "changed");
    assert!(!changed.is_empty());
    for status in &changed {
        assert_eq!(status["observedGeneration"], 2, "{status:#}");
        assert!(
            status["servingGeneration"] == 1 || status["servingGeneration"] == 2,
            "{status:#}"
        );
    }
}

/// The statuses written to WasmFilter `default/<name>` (server-side apply patches).
fn status_patches(api: &FakeApiServer, name: &str) -> Vec<Value> {
    let path = format!("/apis/weft.dev/v1alpha1/namespaces/default/wasmfilters/{name}/status");
    api.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path == path)
        .map(|r| r.body["status"].clone())
        .collect()
}

/// After a restart, a filter whose proxies do not come back keeps its recorded status for the
/// grace period; then its status says no connected proxy selects it, still in service
/// (`Ready=True`, `servingGeneration` kept).
#[tokio::test]
async fn after_a_restart_a_filter_waits_for_its_proxies_for_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(2);
    let upstream = Upstream::start().await.expect("upstream");
    let cluster = Cluster::start().await;
    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    cluster.put_module("greeter.wasm", &module);
    let state = tempfile::tempdir().expect("state");
    let proxy = cluster.proxy(upstream.addr(), "shop-0", state.path()).await;
    cluster.apply_filter("greeter", greeter("greeter.wasm", &sha, "hello"));
    let recorded = cluster
        .wait_for_status("greeter", |s| ready_because(s, "True", "RolledOut"))
        .await;

    // The control plane and the proxy go away; only the control plane comes back.
    let (api, address) = cluster.stop().await;
    proxy.shutdown().await;
    api.clear_requests();
    let restarted = tokio::time::Instant::now();
    let options = KubernetesOptions {
        resubscribe_grace: GRACE,
        ..Cluster::options()
    };
    let cluster = Cluster::start_on(api, address, options).await;

    // It publishes the filter again; the recorded status stays while the proxy may return.
    let deadline = restarted + WAIT;
    while cluster.control_plane.catalog().filters.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    if restarted.elapsed() < GRACE {
        assert_eq!(status_patches(&cluster.api, "greeter"), Vec::<Value>::new());
    } else {
        eprintln!(
            "publishing took {:?}, longer than the grace period: not checking it",
            restarted.elapsed()
        );
    }

    // Then what is true: no connected proxy selects it, and it is still in service.
    let status = cluster
        .wait_for_status("greeter", |s| ready_because(s, "True", "NoSelectedProxies"))
        .await;
    assert!(restarted.elapsed() >= GRACE);
    assert_eq!(status["servingGeneration"], 1, "{status:#}");
    assert_eq!(
        status["servingSha256"], recorded["servingSha256"],
        "{status:#}"
    );
    assert_eq!(status["rollout"]["selected"], 0, "{status:#}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = status_patches(&cluster.api, "greeter");
    assert_eq!(written.len(), 1, "{written:#?}");
    assert_eq!(written[0], status);
}

/// The scenario against a real API server: apply the CRD and a WasmFilter, see a proxy
/// enforce it and the status report it, change the config and see it roll, see the API
/// server refuse bad specs through the CRD's schema and CEL rules (naming the field), and
/// restart the control plane without the status saying the filter is not ready.
///
/// Run with a cluster in `KUBECONFIG` (kind, minikube, or any cluster where you may create
/// CRDs and namespaces):
///
/// ```sh
/// KUBECONFIG=~/.kube/config cargo test --release -p weft-tests --test e2e \
///     a_real_cluster -- --ignored --nocapture
/// ```
///
/// The control plane and the proxy run in the test process; only the API server is remote,
/// and the module travels in a ConfigMap.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored (see README)"]
async fn a_real_cluster_applies_rolls_and_reports() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use weft_controlplane::crd::{CRD_NAME, WasmFilterResource, crd};

    let Some(kubeconfig) = std::env::var_os("KUBECONFIG") else {
        panic!(
            "KUBECONFIG is not set: this test needs a Kubernetes cluster. Point KUBECONFIG at \
             one (kind, minikube, ...) and run it again; see the README's Kubernetes section"
        );
    };
    eprintln!(
        "using the cluster in KUBECONFIG={}",
        kubeconfig.to_string_lossy()
    );
    let client = kube::Client::try_default()
        .await
        .expect("a client for the cluster in KUBECONFIG");

    // The CRD, applied server-side as `kubectl apply --server-side` would.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("weft-e2e").force(),
        &Patch::Apply(&crd()),
    )
    .await
    .expect("apply the CRD");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let crd = crds.get(CRD_NAME).await.expect("read the CRD");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CRD not established"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A namespace of our own, deleted at the end.
    let namespace = format!("weft-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": namespace } })).expect("ns"),
        )
        .await
        .expect("create the test namespace");

    let module = std::fs::read(guests::CONFIG_ECHO).expect("module");
    let sha = sha256_hex(&module);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "modules" },
                "binaryData": { "greeter.wasm": base64(&module) },
            }))
            .expect("configmap"),
        )
        .await
        .expect("create the module ConfigMap");

    // The control plane (watching only our namespace) and a proxy in that namespace.
    let control_plane = ControlPlane::new("weft-system");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let grpc = server::serve(&control_plane, listener, None, None)
        .await
        .expect("gRPC");
    let options = KubernetesOptions {
        namespace: Some(namespace.clone()),
        ..KubernetesOptions::default()
    };
    let source = KubernetesSource::start(client.clone(), control_plane.clone(), options.clone())
        .expect("source");
    let upstream = Upstream::start().await.expect("upstream");
    let state = tempfile::tempdir().expect("state");
    let proxy = start_proxy(&format!(
        "{}control_plane:\n  address: http://{}\n  name: shop-0\n  namespace: {namespace}\n  \
         labels: {{ app: shop }}\n  state_dir: {:?}\n",
        crate::one_route(upstream.addr(), &[]),
        grpc.local_addr(),
        state.path()
    ))
    .await
    .expect("proxy");

    let filters: Api<WasmFilterResource> = Api::namespaced(client.clone(), &namespace);
    let apply = |greeting: &str| {
        serde_json::from_value::<WasmFilterResource>(json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": { "name": "greeter", "namespace": namespace },
            "spec": greeter("greeter.wasm", &sha, greeting),
        }))
        .expect("object")
    };
    let wait_status = |generation: i64| {
        let filters = filters.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let object = filters.get("greeter").await.expect("read the WasmFilter");
                let status = serde_json::to_value(&object.status).expect("json");
                if status["servingGeneration"] == generation
                    && ready_because(&status, "True", "RolledOut")
                {
                    return status;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "status never reported generation {generation} rolled out: {status:#}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    filters
        .patch(
            "greeter",
            &PatchParams::apply("weft-e2e"),
            &Patch::Apply(&apply("hello")),
        )
        .await
        .expect("apply the WasmFilter");
    wait_for_greeting(proxy.addr(), "hello").await;
    let status = wait_status(1).await;
    assert_eq!(status["rollout"]["updated"], 1, "{status:#}");

    filters
        .patch(
            "greeter",
            &PatchParams::apply("weft-e2e"),
            &Patch::Apply(&apply("rolled")),
        )
        .await
        .expect("change the config");
    wait_for_greeting(proxy.addr(), "rolled").await;
    wait_status(2).await;

    // The CRD's schema refuses an obviously bad spec at apply time.
    let mut bad = apply("bad");
    bad.spec.module.config_map = None;
    bad.spec.module.url = Some("http://insecure.example/greeter.wasm".to_owned());
    let refused = filters
        .patch(
            "greeter",
            &PatchParams::apply("weft-e2e"),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("the API server refuses an http:// module URL");
    eprintln!("refused as expected: {refused}");

    // The CEL rules name the field they are about (their fieldPath), not `<nil>`.
    let mut bad = apply("bad");
    bad.spec.pull_secret = Some("regcred".to_owned());
    let refused = filters
        .patch(
            "greeter",
            &PatchParams::apply("weft-e2e"),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("the API server refuses a pullSecret for a ConfigMap module")
        .to_string();
    eprintln!("refused as expected: {refused}");
    assert!(
        refused.contains("spec.pullSecret: Forbidden") && !refused.contains("<nil>"),
        "{refused}"
    );
    let mut bad = apply("bad");
    bad.spec.sha256 = None;
    let refused = filters
        .patch(
            "greeter",
            &PatchParams::apply("weft-e2e"),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("the API server refuses a ConfigMap module without sha256")
        .to_string();
    eprintln!("refused as expected: {refused}");
    assert!(refused.contains("spec.sha256: Required value"), "{refused}");

    // A control plane restart: until the proxy reports to the new one, and after, the filter
    // stays Ready with generation 2 in service.
    drop(source);
    let address = grpc.local_addr();
    grpc.shutdown().await;
    let control_plane = ControlPlane::new("weft-system");
    let listener = TcpListener::bind(address).await.expect("bind again");
    let _grpc = server::serve(&control_plane, listener, None, None)
        .await
        .expect("gRPC");
    let _source =
        KubernetesSource::start(client.clone(), control_plane.clone(), options).expect("source");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut reported_at = None;
    loop {
        let object = filters.get("greeter").await.expect("read the WasmFilter");
        let status = serde_json::to_value(&object.status).expect("json");
        assert!(
            status["servingGeneration"] == 2 && ready_because(&status, "True", "RolledOut"),
            "after the restart: {status:#}"
        );
        let reported = control_plane.proxies().iter().any(|p| {
            p.connected
                && p.last_report
                    .as_ref()
                    .is_some_and(|r| r.accepted && r.version == p.sent_version)
        });
        match reported_at {
            None if reported => reported_at = Some(tokio::time::Instant::now()),
            Some(at) if at.elapsed() > Duration::from_secs(2) => break,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy never reported to the restarted control plane"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete the test namespace");
}

/// Mesh identity against a real API server: a proxy's service-account token (from the
/// TokenRequest API, audience `weft`, as a projected volume would hold it) gets its workload
/// certificate through a real `TokenReview`; a garbage token, a token for the API server's
/// own audience and a token of another service account are refused. Opt-in:
///
/// ```sh
/// KUBECONFIG=~/.kube/config cargo test --release -p weft-tests --test e2e \
///     a_real_cluster_reviews -- --ignored --nocapture
/// ```
///
/// The identity of the cluster user in KUBECONFIG needs to create namespaces, service
/// accounts, their tokens, and TokenReviews.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored (see README)"]
async fn a_real_cluster_reviews_service_account_tokens() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use kube::api::{Api, DeleteParams, PostParams};
    use weft_controlplane::identity::{Issuer, Reviewer, TokenReviewer};
    use weft_identity::authority::{Authority, AuthoritySource};
    use weft_identity::tls::{Credentials, WorkloadKey};

    let Some((client, namespace)) = real_cluster(
        "a_real_cluster_reviews_service_account_tokens",
        "weft-e2e-identity",
    )
    .await
    else {
        return;
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    for name in ["orders", "payments"] {
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": name } })).expect("sa"),
            )
            .await
            .expect("create a service account");
    }
    let token_for = |account: &'static str, audiences: Option<Vec<String>>| {
        let accounts = accounts.clone();
        async move {
            let request = TokenRequest {
                metadata: Default::default(),
                spec: Some(TokenRequestSpec {
                    audiences,
                    expiration_seconds: Some(600),
                    ..TokenRequestSpec::default()
                }),
                status: None,
            };
            accounts
                .create_token_request(account, &PostParams::default(), &request)
                .await
                .expect("a token from the TokenRequest API")
                .status
                .and_then(|s| s.token)
                .expect("the TokenRequest answer carries a token")
        }
    };
    let orders = token_for("orders", Some(vec!["weft".to_owned()])).await;
    let payments = token_for("payments", Some(vec!["weft".to_owned()])).await;
    // No audience: the API server's own, as the default token of a pod.
    let for_the_api_server = token_for("orders", None).await;

    let ca_dir = tempfile::tempdir().expect("dir");
    let (authority, _) = Authority::load(
        &AuthoritySource::Directory(ca_dir.path().to_owned()),
        "cluster.local",
        Duration::from_secs(3600),
    )
    .expect("authority");
    let issuer = std::sync::Arc::new(Issuer::new(
        authority,
        Reviewer::TokenReview(TokenReviewer::new(client.clone(), "weft")),
    ));
    let cp = weft_tests::control_plane::TestControlPlane::start_with_identity(
        "127.0.0.1:0".parse().expect("address"),
        None,
        Some(issuer),
    )
    .await
    .expect("control plane");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cp.addr()))
        .expect("URI")
        .connect()
        .await
        .expect("connect");
    let key = WorkloadKey::generate().expect("key");
    let certify = |token: String, account: &str| {
        let request = weft_api::v1::CertifyRequest {
            csr_der: key.csr_der().expect("CSR"),
            token,
            namespace: namespace.clone(),
            service_account: account.to_owned(),
        };
        let mut client = weft_api::v1::identity_client::IdentityClient::new(channel.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(30), client.certify(request))
                .await
                .expect("Certify answers in time")
                .map(tonic::Response::into_inner)
        }
    };

    let answer = certify(orders.clone(), "orders")
        .await
        .expect("the service account's token gets its identity");
    let credentials = Credentials::new(
        &key,
        &answer.certificate_chain_pem,
        &answer.trust_anchors_pem,
    )
    .expect("usable credentials");
    assert_eq!(
        credentials.identity().as_str(),
        format!("spiffe://cluster.local/ns/{namespace}/sa/orders")
    );

    let garbage = certify("garbage".to_owned(), "orders")
        .await
        .expect_err("a garbage token is refused");
    assert_eq!(garbage.code(), tonic::Code::Unauthenticated, "{garbage:?}");
    eprintln!("refused as expected: {}", garbage.message());
    let wrong_audience = certify(for_the_api_server, "orders")
        .await
        .expect_err("a token for the API server's audience is refused");
    assert_eq!(
        wrong_audience.code(),
        tonic::Code::Unauthenticated,
        "{wrong_audience:?}"
    );
    eprintln!("refused as expected: {}", wrong_audience.message());
    let other = certify(payments, "orders")
        .await
        .expect_err("another service account's token is refused");
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete the test namespace");
}

/// Against a real cluster (`KUBECONFIG`): a selector-less `Service` and an `EndpointSlice`
/// written for it (as an external controller would) are discovered by the Kubernetes source,
/// streamed on `Watch`, and a change of the slice (an endpoint terminating, one added) arrives
/// as an update of that service alone.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored (see README)"]
async fn a_real_cluster_discovers_services_and_endpoint_slices() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
    use kube::discovery::ApiResource;
    use weft_tests::control_plane::TestControlPlane;
    use weft_tests::discovery::{
        TestEndpoint, endpoints_of, k8s_endpoint_slice, k8s_service, watch_services,
    };

    let Some((client, namespace)) = real_cluster(
        "a_real_cluster_discovers_services_and_endpoint_slices",
        "weft-e2e-discovery",
    )
    .await
    else {
        return;
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());

    let apply = |resource: ApiResource, object: Value| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        async move {
            api.patch(
                &name,
                &PatchParams::apply("weft-e2e").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("server-side apply")
        }
    };
    let services = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
    let slices = ApiResource::erase::<k8s_openapi::api::discovery::v1::EndpointSlice>(&());
    let addr = |ip: &str| format!("{ip}:1").parse().expect("address");
    let slice = |endpoints: &[TestEndpoint]| {
        let mut slice = k8s_endpoint_slice(
            &namespace,
            "reviews",
            "reviews-1",
            &[("http", 8080)],
            endpoints,
        );
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = json!("weft-e2e");
        slice
    };
    apply(
        services.clone(),
        k8s_service(&namespace, "reviews", &[("http", 9080, None)]),
    )
    .await;
    apply(
        slices.clone(),
        slice(&[
            TestEndpoint::new(addr("10.250.0.1")),
            TestEndpoint::new(addr("10.250.0.2")),
        ]),
    )
    .await;

    let cp = TestControlPlane::start_kubernetes(client.clone(), None)
        .await
        .expect("control plane");
    let mut watch = watch_services(cp.addr(), (namespace.as_str(), "p"), &[namespace.as_str()])
        .await
        .expect("watch");
    let key = format!("{namespace}/reviews");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let full = loop {
        let update = watch
            .next_within(Duration::from_secs(60))
            .await
            .expect("an update");
        if update
            .services
            .iter()
            .any(|s| format!("{}/{}", s.namespace, s.name) == key)
        {
            break update;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} never arrived"
        );
    };
    let service = full
        .services
        .iter()
        .find(|s| s.name == "reviews")
        .expect("reviews");
    assert_eq!(service.ports[0].port, 9080);
    assert_eq!(
        endpoints_of(service, "http"),
        [
            ("10.250.0.1:8080".to_owned(), true),
            ("10.250.0.2:8080".to_owned(), true)
        ]
    );

    apply(
        slices.clone(),
        slice(&[
            TestEndpoint::new(addr("10.250.0.1")).terminating(),
            TestEndpoint::new(addr("10.250.0.2")),
            TestEndpoint::new(addr("10.250.0.3")),
        ]),
    )
    .await;
    let update = watch
        .next_within(Duration::from_secs(60))
        .await
        .expect("the slice's change");
    assert!(!update.full);
    assert_eq!(update.services.len(), 1, "that service alone");
    assert_eq!(
        endpoints_of(&update.services[0], "http"),
        [
            ("10.250.0.1:8080".to_owned(), false),
            ("10.250.0.2:8080".to_owned(), true),
            ("10.250.0.3:8080".to_owned(), true)
        ]
    );

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete the test namespace");
}

/// For an opt-in test against a real cluster: a client for the cluster in `KUBECONFIG` and
/// a fresh namespace `<prefix>-<pid>` (the test deletes it). Without `KUBECONFIG`, a loud
/// banner saying `test` tested nothing, and `None`.
async fn real_cluster(test: &str, prefix: &str) -> Option<(kube::Client, String)> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};

    let Some(kubeconfig) = std::env::var_os("KUBECONFIG") else {
        eprintln!(
            "\n********************************************************************\n\
             SKIPPED {test}: KUBECONFIG is not set.\n\
             It needs a Kubernetes cluster: point KUBECONFIG at one (kind, minikube, ...)\n\
             and run it again with --ignored. NOTHING WAS TESTED.\n\
             ********************************************************************\n"
        );
        return None;
    };
    eprintln!(
        "using the cluster in KUBECONFIG={}",
        kubeconfig.to_string_lossy()
    );
    let client = kube::Client::try_default()
        .await
        .expect("a client for the cluster in KUBECONFIG");
    let namespace = format!("{prefix}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": namespace } })).expect("ns"),
        )
        .await
        .expect("create the test namespace");
    Some((client, namespace))
}
