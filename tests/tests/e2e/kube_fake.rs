//! The fake Kubernetes API server (`weft_tests::kube_fake`) driven through a real
//! `kube::Client` and `kube::runtime::watcher`, so that the controller's tests stand on
//! answers shaped like a real API server's.

use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};
use weft_controlplane::crd::WasmFilterResource;
use weft_tests::get;
use weft_tests::kube_fake::FakeApiServer;

const WAIT: Duration = Duration::from_secs(10);
const API_VERSION: &str = "weft.dev/v1alpha1";

/// A `WasmFilter` with an OCI module selecting `app: demo`.
fn filter(name: &str, tag: &str) -> WasmFilterResource {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION,
        "kind": "WasmFilter",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "module": { "oci": format!("registry.example.com/weft/{name}:{tag}") },
            "selector": { "matchLabels": { "app": "demo" } },
        },
    }))
    .expect("a valid WasmFilter")
}

fn status_code(error: &kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn generation(f: &WasmFilterResource) -> i64 {
    f.metadata
        .generation
        .expect("custom resources have a generation")
}

/// The next watcher event; panics on an error, the end, or nothing within [`WAIT`].
async fn next_event<S>(stream: &mut S) -> Event<WasmFilterResource>
where
    S: futures_util::Stream<Item = Result<Event<WasmFilterResource>, watcher::Error>> + Unpin,
{
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("unexpected watcher error: {error}"),
        Ok(None) => panic!("the watcher ended"),
        Err(_) => panic!("no watcher event within {WAIT:?}"),
    }
}

/// `Init`, the `InitApply` names in order, `InitDone`.
async fn expect_init<S>(stream: &mut S) -> Vec<String>
where
    S: futures_util::Stream<Item = Result<Event<WasmFilterResource>, watcher::Error>> + Unpin,
{
    assert!(matches!(next_event(stream).await, Event::Init));
    let mut names = Vec::new();
    loop {
        match next_event(stream).await {
            Event::InitApply(f) => names.push(f.name_any()),
            Event::InitDone => return names,
            other => panic!("unexpected event during init: {other}"),
        }
    }
}

fn describe(event: &Event<WasmFilterResource>) -> String {
    match event {
        Event::Apply(f) => format!("apply {} gen {}", f.name_any(), generation(f)),
        Event::Delete(f) => format!("delete {}", f.name_any()),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_replace_delete() {
    let server = FakeApiServer::start().await;
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());

    let created = api
        .create(&PostParams::default(), &filter("rl", "0.1.0"))
        .await
        .expect("create");
    assert_eq!(generation(&created), 1);
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv: u64 = created
        .resource_version()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    assert_eq!(rv, server.resource_version());

    let again = api
        .create(&PostParams::default(), &filter("rl", "0.1.0"))
        .await;
    assert_eq!(
        status_code(&again.expect_err("duplicate")),
        (409, "AlreadyExists".into())
    );

    let got = api.get("rl").await.expect("get");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        got.spec.module.oci.as_deref(),
        Some("registry.example.com/weft/rl:0.1.0")
    );

    api.create(&PostParams::default(), &filter("authz", "0.1.0"))
        .await
        .expect("create a second");
    let list = api.list(&ListParams::default()).await.expect("list");
    let names: Vec<String> = list.items.iter().map(|f| f.name_any()).collect();
    assert_eq!(names, ["authz", "rl"], "lists are ordered by name");
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let all: Api<WasmFilterResource> = Api::all(server.client());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("list all")
            .items
            .len(),
        2
    );

    // Replace: needs the current resourceVersion; a stale one is a conflict.
    let mut changed = got.clone();
    changed.spec.priority = 5;
    let replaced = api
        .replace("rl", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_eq!(replaced.spec.priority, 5);
    assert_eq!(generation(&replaced), 2);
    let stale = api.replace("rl", &PostParams::default(), &changed).await;
    assert_eq!(
        status_code(&stale.expect_err("stale")),
        (409, "Conflict".into())
    );
    let mut unconditional = changed.clone();
    unconditional.metadata.resource_version = None;
    let refused = api
        .replace("rl", &PostParams::default(), &unconditional)
        .await;
    assert_eq!(
        status_code(&refused.expect_err("no rv")),
        (422, "Invalid".into())
    );

    // Delete: the Status of an immediate deletion, then 404.
    let deleted = api
        .delete("rl", &DeleteParams::default())
        .await
        .expect("delete");
    let status = deleted.right().expect("a Status for an immediate deletion");
    assert_eq!(
        status.details.expect("details").uid,
        created.uid().unwrap_or_default()
    );
    let missing = api.get("rl").await.expect_err("gone");
    assert_eq!(status_code(&missing), (404, "NotFound".into()));
    assert!(api.get_opt("rl").await.expect("get_opt").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_status_objects_like_the_real_ones() {
    let server = FakeApiServer::start().await;
    let reply = get(
        server.addr(),
        "/apis/weft.dev/v1alpha1/namespaces/default/wasmfilters/x",
        &[],
    )
    .await
    .expect("a reply");
    assert_eq!(reply.status, 404);
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(
        body,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "wasmfilters.weft.dev \"x\" not found", "reason": "NotFound",
            "details": { "name": "x", "group": "weft.dev", "kind": "wasmfilters" }, "code": 404,
        })
    );
    let reply = get(
        server.addr(),
        "/api/v1/namespaces/default/configmaps/y",
        &[],
    )
    .await
    .expect("a reply");
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(body["message"], "configmaps \"y\" not found");
    assert_eq!(
        body["details"],
        json!({ "name": "y", "kind": "configmaps" })
    );

    for path in [
        "/apis/nope.dev/v1/things",
        "/api/v1/namespaces/default/widgets",
        "/healthz",
    ] {
        let reply = get(server.addr(), path, &[]).await.expect("a reply");
        assert_eq!(reply.status, 404, "{path}");
        let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(body["kind"], "Status", "{path}");
    }

    // Creating in a namespace that does not exist, as on a real cluster.
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "missing");
    let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "c" } })).expect("cm");
    let error = api
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("no namespace");
    assert_eq!(status_code(&error), (404, "NotFound".into()));

    let version = server.client().apiserver_version().await.expect("/version");
    assert_eq!(version.major, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_moves_only_with_the_spec() {
    let server = FakeApiServer::start().await;
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    let created = api
        .create(&PostParams::default(), &filter("rl", "0.1.0"))
        .await
        .expect("create");
    let rv = |f: &WasmFilterResource| f.resource_version().unwrap_or_default();

    let labelled = api
        .patch(
            "rl",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "team": "edge" } } })),
        )
        .await
        .expect("label");
    assert_eq!(
        generation(&labelled),
        1,
        "metadata does not bump the generation"
    );
    assert_ne!(rv(&labelled), rv(&created));

    let specced = api
        .patch(
            "rl",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "priority": 7 } })),
        )
        .await
        .expect("spec");
    assert_eq!(generation(&specced), 2);

    // A write that changes nothing stores nothing: same resourceVersion, no event.
    let same = api
        .replace("rl", &PostParams::default(), &specced)
        .await
        .expect("no-op replace");
    assert_eq!(rv(&same), rv(&specced));
    assert_eq!(server.resource_version().to_string(), rv(&specced));

    // Status written through the object is ignored (status subresource).
    let ignored = api
        .patch(
            "rl",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "observedGeneration": 9 } })),
        )
        .await
        .expect("status through the object");
    assert!(ignored.status.is_none());
    assert_eq!(rv(&ignored), rv(&specced));

    let with_status = api
        .patch_status(
            "rl",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "status": { "observedGeneration": 2 }, "spec": { "priority": 1 } }),
            ),
        )
        .await
        .expect("merge status");
    assert_eq!(
        with_status
            .status
            .as_ref()
            .and_then(|s| s.observed_generation),
        Some(2)
    );
    assert_eq!(
        with_status.spec.priority, 7,
        "spec through /status is ignored"
    );
    assert_eq!(generation(&with_status), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_of_status() {
    let server = FakeApiServer::start().await;
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &filter("rl", "0.1.0"))
        .await
        .expect("create");
    let apply = |status: Value| {
        Patch::Apply(json!({ "apiVersion": API_VERSION, "kind": "WasmFilter", "status": status }))
    };
    let params = PatchParams::apply("weft-controlplane").force();
    let status = json!({
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Serving", "message": "ok",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }],
        "servingGeneration": 1,
        "rollout": { "selected": 2, "updated": 2, "rejected": 0 },
    });
    let applied = api
        .patch_status("rl", &params, &apply(status.clone()))
        .await
        .expect("apply status");
    let got = applied.status.clone().expect("status");
    assert_eq!(got.serving_generation, Some(1));
    assert_eq!(got.rollout.as_ref().map(|r| r.selected), Some(2));
    assert_eq!(generation(&applied), 1);
    assert_eq!(applied.spec.priority, 0);
    let managers: Vec<(String, Option<String>)> = applied
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&("weft-controlplane".into(), Some("status".into()))),
        "{managers:?}"
    );

    let request = server
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .expect("the apply request");
    assert_eq!(
        request.path,
        "/apis/weft.dev/v1alpha1/namespaces/default/wasmfilters/rl/status"
    );
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        request.param("fieldManager").as_deref(),
        Some("weft-controlplane")
    );
    assert_eq!(request.param("force").as_deref(), Some("true"));
    assert_eq!(request.body["status"], status);

    // The same status again: nothing stored.
    let rv = server.resource_version();
    api.patch_status("rl", &params, &apply(status.clone()))
        .await
        .expect("apply again");
    assert_eq!(server.resource_version(), rv);

    // The applier owns what it applied: fields it stops applying go away.
    let smaller = api
        .patch_status(
            "rl",
            &params,
            &apply(json!({ "observedGeneration": 1, "conditions": [] })),
        )
        .await
        .expect("apply less");
    let smaller = smaller.status.expect("status");
    assert!(smaller.rollout.is_none() && smaller.serving_generation.is_none());
    assert!(smaller.conditions.is_empty());

    // Another manager without force conflicts on a field with another value; with force
    // it takes it.
    let other = PatchParams::apply("someone-else");
    let error = api
        .patch_status("rl", &other, &apply(json!({ "observedGeneration": 5 })))
        .await
        .expect_err("conflict");
    assert_eq!(status_code(&error), (409, "Conflict".into()));
    let taken = api
        .patch_status(
            "rl",
            &other.force(),
            &apply(json!({ "observedGeneration": 5 })),
        )
        .await
        .expect("forced");
    assert_eq!(taken.status.expect("status").observed_generation, Some(5));

    // Server-side apply needs a field manager; /status of a missing object is a 404.
    let error = api
        .patch_status("rl", &PatchParams::default(), &apply(json!({})))
        .await
        .expect_err("no fieldManager");
    assert_eq!(status_code(&error), (422, "Invalid".into()));
    let error = api
        .patch_status("missing", &params, &apply(json!({})))
        .await
        .expect_err("missing");
    assert_eq!(status_code(&error), (404, "NotFound".into()));

    // Apply to the object creates it; spec and labels merge, status is ignored.
    let created = api
        .patch(
            "new",
            &params,
            &Patch::Apply(json!({
                "apiVersion": API_VERSION, "kind": "WasmFilter",
                "metadata": { "name": "new", "labels": { "a": "1" } },
                "spec": { "module": { "oci": "r.example/x:1" } },
                "status": { "observedGeneration": 3 },
            })),
        )
        .await
        .expect("apply creates");
    assert_eq!(generation(&created), 1);
    assert!(created.status.is_none());
    assert_eq!(created.labels().get("a").map(String::as_str), Some("1"));
    assert_eq!(
        server.requests().last().map(|r| r.status),
        Some(201),
        "apply that creates answers 201"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_changes_in_order() {
    let server = FakeApiServer::start().await;
    server.apply_object(serde_json::to_value(filter("existing", "0.1.0")).expect("json"));
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(expect_init(&mut events).await, ["existing"]);

    api.create(&PostParams::default(), &filter("rl", "0.1.0"))
        .await
        .expect("create");
    api.patch(
        "rl",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "priority": 3 } })),
    )
    .await
    .expect("patch");
    // A change in another namespace and another kind: not seen.
    server.apply_object(json!({
        "apiVersion": API_VERSION, "kind": "WasmFilter",
        "metadata": { "name": "elsewhere", "namespace": "other" },
        "spec": { "module": { "oci": "r.example/x:1" } },
    }));
    server.apply_object(
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" } }),
    );
    api.delete("rl", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(server.delete_object(API_VERSION, "WasmFilter", "default", "existing"));

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(describe(&next_event(&mut events).await));
    }
    assert_eq!(
        seen,
        [
            "apply rl gen 1",
            "apply rl gen 2",
            "delete rl",
            "delete existing"
        ]
    );
    let lists = server.requests().iter().filter(|r| r.is_list()).count();
    assert_eq!(lists, 1, "one LIST, then one watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_after_410_gone() {
    let server = FakeApiServer::start().await;
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &filter("a", "0.1.0"))
        .await
        .expect("create");
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(expect_init(&mut events).await, ["a"]);
    let count = |what: fn(&weft_tests::kube_fake::RecordedRequest) -> bool| {
        server.requests().iter().filter(|r| what(r)).count()
    };

    // The watcher is lazy: it opens its watch when polled after InitDone.
    api.create(&PostParams::default(), &filter("b", "0.1.0"))
        .await
        .expect("create b");
    assert_eq!(describe(&next_event(&mut events).await), "apply b gen 1");
    assert_eq!(count(|r| r.is_watch()), 1);

    // A clean end of the stream (like timeoutSeconds): the watcher watches again from the
    // last resourceVersion it saw, without a LIST.
    server.drop_watches();
    server.apply_object(serde_json::to_value(filter("c", "0.1.0")).expect("json"));
    assert_eq!(describe(&next_event(&mut events).await), "apply c gen 1");
    assert_eq!(count(|r| r.is_watch()), 2);
    assert_eq!(count(|r| r.is_list()), 1);

    // History compacted while watching: the resumed watch gets 410 Gone, the watcher
    // lists again and sees the change made meanwhile.
    server.compact_history();
    server.apply_object(serde_json::to_value(filter("d", "0.1.0")).expect("json"));
    let error = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event")
        .expect("the watcher goes on");
    match error {
        Err(watcher::Error::WatchError(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!(
            "expected a 410 watch error, got {:?}",
            other.map(|e| e.to_string())
        ),
    }
    assert_eq!(expect_init(&mut events).await, ["a", "b", "c", "d"]);
    assert_eq!(count(|r| r.is_list()), 2);

    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(describe(&next_event(&mut events).await), "delete a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher() {
    let server = FakeApiServer::start().await;
    server.apply_object(serde_json::to_value(filter("a", "0.1.0")).expect("json"));
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    let mut events = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert_eq!(expect_init(&mut events).await, ["a"]);
    api.create(&PostParams::default(), &filter("b", "0.1.0"))
        .await
        .expect("create");
    assert_eq!(describe(&next_event(&mut events).await), "apply b gen 1");
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("a watch");
    assert_eq!(watch.param("sendInitialEvents").as_deref(), Some("true"));
    assert_eq!(server.requests().iter().filter(|r| r.is_list()).count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_selectors_bookmarks_and_timeout() {
    let server = FakeApiServer::start().await;
    server.set_bookmark_interval(Duration::from_millis(50));
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let start = server.resource_version().to_string();
    let params = WatchParams::default().labels("app=demo").timeout(2);
    let mut stream = api.watch(&params, &start).await.expect("watch").boxed();

    let cm = |name: &str, app: &str| {
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": name, "labels": { "app": app } } })
    };
    server.apply_object(cm("one", "demo"));
    server.apply_object(cm("two", "other"));
    server.apply_object(cm("one", "other")); // leaves the selector: DELETED for this watch
    server.apply_object(cm("two", "demo")); // enters it: ADDED

    let mut seen = Vec::new();
    let mut bookmarks = 0;
    while let Some(event) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the watch ends by its timeout")
    {
        match event.expect("an event") {
            WatchEvent::Added(c) => seen.push(format!("added {}", c.name_any())),
            WatchEvent::Modified(c) => seen.push(format!("modified {}", c.name_any())),
            WatchEvent::Deleted(c) => seen.push(format!("deleted {}", c.name_any())),
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.types.kind, "ConfigMap");
                bookmarks += 1;
            }
            WatchEvent::Error(e) => panic!("error event: {e:?}"),
        }
    }
    assert_eq!(seen, ["added one", "deleted one", "added two"]);
    assert!(
        bookmarks >= 2,
        "bookmarks every 50ms over a 2s watch: {bookmarks}"
    );

    // Too old a resourceVersion: an ERROR event with 410.
    server.compact_history();
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_from_a_snapshot_and_select() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    for (i, app) in ["demo", "demo", "other", "demo", "demo"].iter().enumerate() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": format!("cm-{i}"), "labels": { "app": app } },
            "data": { "i": i.to_string() },
        }))
        .expect("cm");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    // Changes after the first page do not show in later pages.
    server.apply_object(
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cm-9" } }),
    );
    api.delete("cm-4", &DeleteParams::default())
        .await
        .expect("delete");
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    let third = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().expect("more")),
        )
        .await
        .expect("page 3");
    assert!(third.metadata.continue_.is_none());
    let names: Vec<String> = [first, second, third]
        .iter()
        .flat_map(|l| l.items.iter().map(|c| c.name_any()))
        .collect();
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);

    let demo = api
        .list(&ListParams::default().labels("app=demo"))
        .await
        .expect("labels");
    assert_eq!(demo.items.len(), 3);
    let not_demo = api
        .list(&ListParams::default().labels("app notin (demo)"))
        .await
        .expect("notin");
    assert_eq!(not_demo.items.len(), 2, "cm-2 and the unlabelled cm-9");
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=cm-1"))
        .await
        .expect("fields");
    assert_eq!(by_name.items.len(), 1);

    // Built-in types list without apiVersion/kind per item, as the real server does.
    let raw = get(server.addr(), "/api/v1/namespaces/default/configmaps", &[])
        .await
        .expect("raw list");
    let raw: Value = serde_json::from_slice(&raw.body).expect("JSON");
    assert_eq!(raw["kind"], "ConfigMapList");
    assert!(raw["items"][0].get("kind").is_none());

    let namespaces: Api<Namespace> = Api::all(server.client());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("namespaces")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_and_retries() {
    let server = FakeApiServer::start().await;
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &filter("rl", "0.1.0"))
        .await
        .expect("create");

    server.fail_next("GET", "/wasmfilters/rl", 500);
    let error = api.get("rl").await.expect_err("injected");
    assert_eq!(status_code(&error), (500, "InternalError".into()));
    api.get("rl").await.expect("the next one succeeds");

    // kube retries 503 itself: the call succeeds, the fake saw both.
    server.clear_requests();
    server.fail_next("PATCH", "/status", 503);
    api.patch_status(
        "rl",
        &PatchParams::apply("weft-controlplane").force(),
        &Patch::Apply(json!({ "apiVersion": API_VERSION, "kind": "WasmFilter",
                              "status": { "observedGeneration": 1 } })),
    )
    .await
    .expect("retried by the client");
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_a_deletion() {
    let server = FakeApiServer::start().await;
    let api: Api<WasmFilterResource> = Api::default_namespaced(server.client());
    let mut f = filter("rl", "0.1.0");
    f.meta_mut().finalizers = Some(vec!["weft.dev/cleanup".into()]);
    api.create(&PostParams::default(), &f)
        .await
        .expect("create");
    let held = api
        .delete("rl", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("the object while finalizers hold it");
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "rl",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .expect("remove the finalizer");
    assert!(api.get_opt("rl").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_configmaps_and_kubeconfig() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&path)
        .expect("write the kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("read it back");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a config");
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).expect("a client");

    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "pull" },
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": { ".dockerconfigjson": "{}" },
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    let stored = secrets.get("pull").await.expect("get");
    let data = stored.data.expect("stringData folds into data");
    assert_eq!(data[".dockerconfigjson"].0, b"{}");
    assert!(stored.string_data.is_none());

    let maps: Api<ConfigMap> = Api::namespaced(client, "weft-system");
    let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "m" } })).expect("cm");
    assert!(
        maps.create(&PostParams::default(), &cm).await.is_err(),
        "no such namespace yet"
    );
    server.apply_object(
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "weft-system" } }),
    );
    maps.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let waited = server
        .wait_for_object(
            "v1",
            "ConfigMap",
            "weft-system",
            "m",
            |o| o["metadata"]["uid"].is_string(),
            WAIT,
        )
        .await;
    assert_eq!(waited["metadata"]["namespace"], "weft-system");
    assert_eq!(
        server.objects("v1", "ConfigMap", Some("weft-system")).len(),
        1
    );
}
