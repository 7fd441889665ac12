//! A fake Kubernetes API server for tests without a cluster: a real HTTP/1.1 server on
//! `127.0.0.1:0`, stateful and in memory, answering the API calls a kube-rs controller makes
//! the way the real API server answers them.
//!
//! What it implements:
//! - Resources `wasmfilters.weft.dev/v1alpha1` (namespaced, `/status` subresource,
//!   generation), `configmaps`, `secrets`, `services` and `pods` (`/status` subresource),
//!   `endpointslices.discovery.k8s.io/v1`, `namespaces`, `events` (core and `events.k8s.io`),
//!   `leases` and `customresourcedefinitions`, under `/api/v1/...` and
//!   `/apis/{group}/{version}/...`: collections cluster-wide and per namespace, objects, and
//!   `/status`. `default`, `kube-system`, `kube-public` and `kube-node-lease` exist from the
//!   start; creating in a missing namespace is a 404, as on a real cluster.
//! - One resourceVersion counter for everything, bumped by every write. A write that changes
//!   nothing (a no-op PUT, a server-side apply of the same status) stores nothing: no new
//!   resourceVersion, no event, as the real server does.
//! - `uid`, `creationTimestamp` and (custom resources) `generation` on create; generation
//!   +1 when anything outside `metadata` and `status` changes. Status subresource rules:
//!   create and writes to the object ignore `status`; writes to `/status` change only
//!   `status`.
//! - GET; LIST with `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`),
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`), `limit` and `continue` (later
//!   pages come from the first page's snapshot, like etcd); core-group list items carry no
//!   `apiVersion`/`kind`, custom resource items do.
//! - WATCH (`watch=true`/`1`): from `resourceVersion=N`, every later event, then live ones,
//!   as newline-delimited JSON over chunked encoding; from `0` or none, synthetic ADDED events
//!   for the current state first; `sendInitialEvents=true` ends those with a bookmark
//!   annotated `k8s.io/initial-events-end` (streaming lists); `allowWatchBookmarks=true`
//!   sends a BOOKMARK every [`FakeApiServer::set_bookmark_interval`] (1s by default);
//!   `timeoutSeconds` closes the stream; an object that starts or stops matching a
//!   selector is ADDED or DELETED for that watch. A resourceVersion older than the kept
//!   history (1000 events; [`FakeApiServer::compact_history`] drops it) gets an ERROR event
//!   with a 410 `Expired` Status.
//! - POST (201; 409 `AlreadyExists`; `generateName`), PUT (409 `Conflict` on a stale
//!   resourceVersion; custom resources must name one, 422 otherwise), DELETE (a `Success`
//!   Status, or the object with `deletionTimestamp` while finalizers hold it; removing the
//!   last finalizer deletes it; preconditions), DELETE of a collection, PATCH with
//!   `application/merge-patch+json` and with `application/apply-patch+yaml` (server-side
//!   apply: `fieldManager` required (422 otherwise), `force`, JSON or YAML body, field
//!   ownership in `metadata.managedFields` with 409 conflicts between managers, creates a
//!   missing object unless it targets `/status`), `dryRun=All`. Secret `stringData` folds
//!   into `data`. Errors are `Status` objects shaped like the real ones.
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews` (201, the `TokenReview` with its
//!   status, as the real server answers): tokens registered with
//!   [`FakeApiServer::add_service_account_token`] review as their service account
//!   (`system:serviceaccount:<ns>:<name>`, its uid and groups), with `status.audiences` the
//!   intersection of the token's audiences and `spec.audiences` (the API server's own
//!   audience, [`API_AUDIENCE`], when the spec names none); a token bound to none of the asked
//!   audiences, or an unknown one, is not authenticated (`authenticated` absent, `user` empty,
//!   and `error` saying why, as the real server answers). An empty token is a 400.
//! - Every request is recorded ([`FakeApiServer::requests`]); [`FakeApiServer::fail_next`]
//!   makes the next matching one fail.
//!
//! What it does not: authentication and authorization (every request is allowed), schema
//! validation and pruning of custom resources (the CRD's OpenAPI schema and CEL rules are
//! not checked), admission, JSON patch (415, where a real server applies it), strategic
//! merge patch (415 for custom resources, as on a real server; approximated by a merge
//! patch for built-in types), protobuf and tables,
//! discovery documents (only `/version`), garbage collection, a namespace controller (a
//! namespace is deleted at once with its contents), and per-entry list semantics in
//! server-side apply (lists are atomic, which is what the `WasmFilter` schema asks for).

mod fields;
mod resources;
mod select;
mod store;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use self::fields::Part;
use self::resources::{ApiError, RESOURCES, by_kind, by_plural, serves_group_version};
use self::select::{FieldSelector, LabelSelector};
use self::store::{ListOptions, Store, WatchFilter, WatchStart, WatchStep, WriteOptions};

/// How long a watch without `timeoutSeconds` lasts (the real server picks 30 to 60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often a watch that allows bookmarks gets one (the real server: about a minute).
const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// The API server's own audience: what a `TokenReview` without `spec.audiences` checks.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A fake Kubernetes API server on `127.0.0.1`. Dropping it stops it and closes every
/// connection.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks; aborting it drops them, which closes
        // every watch stream.
        self.accept.abort();
    }
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The path, like `/apis/weft.dev/v1alpha1/namespaces/default/wasmfilters/rl/status`.
    pub path: String,
    /// The raw query string as sent (kube starts some with `&`), empty if none.
    pub query: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body: parsed JSON (or YAML) when it parses, a string when not, null when empty.
    pub body: Value,
    /// The response's status code.
    pub status: u16,
}

impl RecordedRequest {
    /// The value of query parameter `name`, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        Query::parse(&self.query).get(name).map(str::to_owned)
    }

    /// Whether this was a WATCH.
    pub fn is_watch(&self) -> bool {
        self.method == "GET" && Query::parse(&self.query).flag("watch")
    }

    /// Whether this was a LIST (a GET of a collection, not a watch).
    pub fn is_list(&self) -> bool {
        self.method == "GET" && !self.is_watch() && is_collection(&self.path)
    }
}

struct Failure {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

struct Shared {
    store: Mutex<Store>,
    /// Ticks on every change of the store (and on compaction and ended watches).
    store_changed: watch::Sender<u64>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Ticks on every recorded request and every watch opened or closed.
    requests_changed: watch::Sender<u64>,
    failures: Mutex<Vec<Failure>>,
    bookmark_interval: Mutex<Duration>,
    open_watches: AtomicUsize,
    /// Service-account tokens `TokenReview` knows, by token.
    tokens: Mutex<HashMap<String, ServiceAccountToken>>,
}

/// A token the fake's `TokenReview` authenticates.
#[derive(Debug, Clone)]
struct ServiceAccountToken {
    namespace: String,
    name: String,
    audiences: Vec<String>,
}

use weft_runtime::lock;

impl Shared {
    /// Runs `f` on the store and wakes watches and waiters.
    fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let result = f(&mut lock(&self.store));
        self.store_changed.send_modify(|n| *n += 1);
        result
    }

    fn take_failure(&self, method: &str, target: &str) -> Option<u16> {
        let mut failures = lock(&self.failures);
        let index = failures.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && target.contains(&f.path_contains)
        })?;
        let status = failures[index].status;
        failures[index].remaining -= 1;
        if failures[index].remaining == 0 {
            failures.remove(index);
        }
        Some(status)
    }

    fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
        self.requests_changed.send_modify(|n| *n += 1);
    }
}

impl FakeApiServer {
    /// Starts a server on `127.0.0.1:0`. Panics if it cannot bind.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake API server to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("the fake API server's address");
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(nanos ^ u64::from(addr.port()))),
            store_changed: watch::Sender::new(0),
            requests: Mutex::new(Vec::new()),
            requests_changed: watch::Sender::new(0),
            failures: Mutex::new(Vec::new()),
            bookmark_interval: Mutex::new(DEFAULT_BOOKMARK_INTERVAL),
            open_watches: AtomicUsize::new(0),
            tokens: Mutex::new(HashMap::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube config for this server: no credentials, default namespace `default`, kube's
    /// default retries (429, 503 and 504 are retried inside the client).
    pub fn config(&self) -> kube::Config {
        let url = self.url().parse().expect("the fake's URL is a URI");
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".to_owned();
        config
    }

    /// A kube client for this server. Call it inside a tokio runtime (the client spawns
    /// its request buffer).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("a kube client for the fake API server")
    }

    /// Writes a kubeconfig pointing at this server (context `fake`, namespace `default`, no
    /// credentials), for a binary started with `KUBECONFIG=path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let kubeconfig = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: fake\n  user: {{}}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            url = self.url()
        );
        std::fs::write(path, kubeconfig)
    }

    /// Creates or replaces an object directly in storage, by its apiVersion, kind,
    /// namespace (default `default`) and name, as another client's write would: same
    /// resourceVersion, generation and watch events. Unlike an API create it keeps `status`;
    /// a replacement without `status` keeps the stored one. Creates a missing namespace.
    /// Returns the stored object. Panics on an object the fake cannot store.
    pub fn apply_object(&self, object: Value) -> Value {
        self.shared
            .write(|store| store.put_direct(object))
            .unwrap_or_else(|e| panic!("apply_object: {}", e.message))
    }

    /// Deletes an object as an API DELETE does (finalizers hold it, marked for deletion).
    /// `namespace` is ignored for cluster-scoped kinds. Whether it existed.
    pub fn delete_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        let res = Self::resource(api_version, kind);
        self.shared
            .write(|store| store.delete(res, namespace, name, &json!({}), false))
            .is_ok()
    }

    /// Makes `token` a token of service account `namespace/name` bound to `audiences`, as
    /// the TokenRequest API would issue it: `TokenReview` then authenticates it for those
    /// audiences. The service account itself need not exist.
    pub fn add_service_account_token(
        &self,
        token: &str,
        namespace: &str,
        name: &str,
        audiences: &[&str],
    ) {
        lock(&self.shared.tokens).insert(
            token.to_owned(),
            ServiceAccountToken {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
    }

    /// Invalidates `token` (its service account or pod was deleted).
    pub fn revoke_token(&self, token: &str) {
        lock(&self.shared.tokens).remove(token);
    }

    /// The stored object, if any.
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let res = Self::resource(api_version, kind);
        lock(&self.shared.store).get(res, namespace, name).ok()
    }

    /// Every stored object of a kind, in one namespace or all, in list order.
    pub fn objects(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let res = Self::resource(api_version, kind);
        lock(&self.shared.store).all(res, namespace)
    }

    fn resource(api_version: &str, kind: &str) -> usize {
        by_kind(api_version, kind)
            .unwrap_or_else(|| panic!("the fake API server does not serve {api_version} {kind}"))
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version()
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Makes the next request with `method` (`*` for any) whose path and query
    /// (`/apis/...?&watch=true...`) contain `path_contains` fail with `status`, answered
    /// with the Status the real server sends for that code (429 adds `Retry-After: 1`).
    /// The request changes nothing. kube retries 429, 503 and 504 by itself.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16) {
        self.fail_times(method, path_contains, status, 1);
    }

    /// [`fail_next`](Self::fail_next), for the next `times` matching requests.
    pub fn fail_times(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        if times == 0 {
            return;
        }
        lock(&self.shared.failures).push(Failure {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            status,
            remaining: times,
        });
    }

    /// Drops the event history and closes every open watch, after moving the
    /// resourceVersion on (as writes elsewhere in a cluster do): a watcher resuming from any
    /// version it saw gets an ERROR event with 410 Gone, and must list again.
    pub fn compact_history(&self) {
        self.shared.write(Store::compact);
    }

    /// Closes every open watch cleanly, as `timeoutSeconds` does: a watcher resumes from
    /// the last resourceVersion it saw, without listing again.
    pub fn drop_watches(&self) {
        self.shared.write(Store::drop_watches);
    }

    /// How many events are kept for watches to replay (default 1000); older
    /// resourceVersions get 410 Gone.
    pub fn set_history_limit(&self, events: usize) {
        self.shared.write(|store| store.set_history_limit(events));
    }

    /// How often watches that allow bookmarks get one (default 1s); applies to watches
    /// opened afterwards.
    pub fn set_bookmark_interval(&self, interval: Duration) {
        *lock(&self.shared.bookmark_interval) = interval;
    }

    /// How many watch streams are open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Waits until the object exists and satisfies `check`; returns it. Panics after
    /// `timeout` with the last state.
    pub async fn wait_for_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        check: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let mut changed = self.shared.store_changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.object(api_version, kind, namespace, name);
            if let Some(object) = &current
                && check(object)
            {
                return object.clone();
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let last = current.map_or_else(
                    || "<absent>".to_owned(),
                    |o| serde_json::to_string_pretty(&o).unwrap_or_default(),
                );
                panic!(
                    "{kind} {namespace}/{name} did not reach the expected state within \
                     {timeout:?}; last state: {last}"
                );
            }
        }
    }

    /// Waits until a recorded request satisfies `check`; returns the first that does.
    /// Panics after `timeout` with the requests seen.
    pub async fn wait_for_request(
        &self,
        check: impl Fn(&RecordedRequest) -> bool,
        timeout: Duration,
    ) -> RecordedRequest {
        let mut changed = self.shared.requests_changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.requests().into_iter().find(|r| check(r)) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
                    .collect();
                panic!(
                    "no matching request within {timeout:?}; requests: {:#?}",
                    seen
                );
            }
        }
    }

    /// Waits until at least `count` watch streams are open. Panics after `timeout`.
    pub async fn wait_for_open_watches(&self, count: usize, timeout: Duration) {
        let mut changed = self.shared.requests_changed.subscribe();
        let deadline = Instant::now() + timeout;
        while self.open_watches() < count {
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "{} watches open after {timeout:?}; expected {count}",
                    self.open_watches()
                );
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    // A client that goes away mid-request is not the test's concern.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Query parameters, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `true` or `1`, as the real server reads boolean parameters.
    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

/// A request, read.
struct Call {
    method: String,
    path: String,
    query: Query,
    content_type: String,
    user_agent: String,
    body: Bytes,
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let call = Call {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: Query::parse(&raw_query),
        content_type: header(header::CONTENT_TYPE).unwrap_or_default(),
        user_agent: header(header::USER_AGENT).unwrap_or_default(),
        body,
    };
    let target = format!("{}?{raw_query}", call.path);
    let response = match shared.take_failure(&call.method, &target) {
        Some(code) => error_response(&ApiError::injected(code, &call.method, &call.path)),
        None => route(&shared, &call).unwrap_or_else(|e| error_response(&e)),
    };
    shared.record(RecordedRequest {
        method: call.method,
        path: call.path,
        query: raw_query,
        content_type: (!call.content_type.is_empty()).then_some(call.content_type),
        body: recorded_body(&call.body),
        status: response.status().as_u16(),
    });
    Ok(response)
}

fn recorded_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    parse_body(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// JSON, or YAML (apply patches may be either).
fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request has no body"));
    }
    serde_json::from_slice(body).or_else(|json_error| {
        serde_norway::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                ApiError::bad_request(format!("the body is neither JSON nor YAML: {json_error}"))
            })
    })
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_response(error.code, &error.status());
    if let Some(seconds) = error.retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// What a path names.
enum Target<'a> {
    Collection {
        res: usize,
        namespace: Option<&'a str>,
    },
    Object {
        res: usize,
        namespace: &'a str,
        name: &'a str,
        part: Part,
    },
}

fn route(shared: &Arc<Shared>, call: &Call) -> Result<Response<Body>, ApiError> {
    if call.path.trim_matches('/') == "version" {
        return Ok(json_response(200, &version()));
    }
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    if segments == ["apis", "authentication.k8s.io", "v1", "tokenreviews"] {
        return token_review(shared, call);
    }
    match resolve(&segments)? {
        Target::Collection { res, namespace } => collection(shared, call, res, namespace),
        Target::Object {
            res,
            namespace,
            name,
            part,
        } => object(shared, call, res, namespace, name, part),
    }
}

/// What the path `segments` name.
fn resolve<'a>(segments: &[&'a str]) -> Result<Target<'a>, ApiError> {
    let (group, version, rest) = match segments {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::unknown_path()),
    };
    if !serves_group_version(group, version) {
        return Err(ApiError::unknown_path());
    }
    target(group, version, rest)
}

/// Whether `path` names a collection.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(resolve(&segments), Ok(Target::Collection { .. }))
}

fn target<'a>(group: &str, version: &str, rest: &[&'a str]) -> Result<Target<'a>, ApiError> {
    let find = |plural: &str| by_plural(group, version, plural).ok_or_else(ApiError::unknown_path);
    let subresource = |res: usize, namespace, name, sub: &str| {
        if sub == "status" && RESOURCES[res].status_subresource {
            Ok(Target::Object {
                res,
                namespace,
                name,
                part: Part::Status,
            })
        } else {
            Err(ApiError::unknown_path())
        }
    };
    if let ["namespaces", namespace, plural, tail @ ..] = rest
        && let Some(res) = by_plural(group, version, plural)
        && RESOURCES[res].namespaced
    {
        return match tail {
            [] => Ok(Target::Collection {
                res,
                namespace: Some(namespace),
            }),
            [name] => Ok(Target::Object {
                res,
                namespace,
                name,
                part: Part::Main,
            }),
            [name, sub] => subresource(res, namespace, name, sub),
            _ => Err(ApiError::unknown_path()),
        };
    }
    match rest {
        [plural] => Ok(Target::Collection {
            res: find(plural)?,
            namespace: None,
        }),
        [plural, name, tail @ ..] => {
            let res = find(plural)?;
            if RESOURCES[res].namespaced {
                return Err(ApiError::unknown_path());
            }
            match tail {
                [] => Ok(Target::Object {
                    res,
                    namespace: "",
                    name,
                    part: Part::Main,
                }),
                [sub] => subresource(res, "", name, sub),
                _ => Err(ApiError::unknown_path()),
            }
        }
        _ => Err(ApiError::unknown_path()),
    }
}

fn collection(
    shared: &Arc<Shared>,
    call: &Call,
    res: usize,
    namespace: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    match call.method.as_str() {
        "GET" if call.query.flag("watch") => watch_response(shared, call, res, namespace),
        "GET" => {
            let options = list_options(&call.query)?;
            let list = lock(&shared.store).list(res, namespace, &options)?;
            Ok(json_response(200, &list))
        }
        "POST" => {
            let namespace = match namespace {
                Some(ns) => ns,
                None if !RESOURCES[res].namespaced => "",
                None => return Err(ApiError::method_not_allowed()),
            };
            let body = parse_body(&call.body)?;
            let options = write_options(call)?;
            let created = shared.write(|s| s.create(res, namespace, body, &options))?;
            Ok(json_response(201, &created))
        }
        "DELETE" => {
            let options = list_options(&call.query)?;
            let dry_run = write_options(call)?.dry_run;
            let deleted =
                shared.write(|s| s.delete_collection(res, namespace, &options, dry_run))?;
            Ok(json_response(200, &deleted))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn object(
    shared: &Arc<Shared>,
    call: &Call,
    res: usize,
    namespace: &str,
    name: &str,
    part: Part,
) -> Result<Response<Body>, ApiError> {
    let options = write_options(call)?;
    match (call.method.as_str(), part) {
        ("GET", _) => Ok(json_response(
            200,
            &lock(&shared.store).get(res, namespace, name)?,
        )),
        ("PUT", _) => {
            let body = parse_body(&call.body)?;
            let stored = shared.write(|s| s.replace(res, namespace, name, part, body, &options))?;
            Ok(json_response(200, &stored))
        }
        ("PATCH", _) => patch(shared, call, res, namespace, name, part, &options),
        ("DELETE", Part::Main) => {
            let delete_options = if call.body.is_empty() {
                json!({})
            } else {
                parse_body(&call.body)?
            };
            let result = shared
                .write(|s| s.delete(res, namespace, name, &delete_options, options.dry_run))?;
            Ok(json_response(200, &result))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn patch(
    shared: &Arc<Shared>,
    call: &Call,
    res: usize,
    namespace: &str,
    name: &str,
    part: Part,
    options: &WriteOptions,
) -> Result<Response<Body>, ApiError> {
    let media_type = call
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let apply = media_type == "application/apply-patch+yaml";
    if options.force && !apply {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let merge = match media_type.as_str() {
        "application/merge-patch+json" => true,
        // A built-in type's strategic merge patch, approximated by a merge patch (they
        // differ on lists with merge keys, which the fake's built-in types barely have).
        "application/strategic-merge-patch+json" if RESOURCES[res].group.is_empty() => true,
        "application/apply-patch+yaml" => false,
        "application/json-patch+json" => {
            return Err(ApiError::unsupported_media_type(
                "the fake API server does not implement application/json-patch+json",
            ));
        }
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml (got {:?})",
                call.content_type
            )));
        }
    };
    let body = parse_body(&call.body)?;
    if merge {
        let stored = shared.write(|s| s.merge(res, namespace, name, part, &body, options))?;
        return Ok(json_response(200, &stored));
    }
    if call.query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    }
    let (status, stored) = shared.write(|s| s.apply(res, namespace, name, part, body, options))?;
    Ok(json_response(status, &stored))
}

fn write_options(call: &Call) -> Result<WriteOptions, ApiError> {
    let dry_run = match call.query.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )));
        }
    };
    // Without fieldManager the real server names the manager after the User-Agent's
    // product ("kube-rs/1.0" -> "kube-rs").
    let manager = match call.query.get("fieldManager") {
        Some(manager) if !manager.is_empty() => manager.to_owned(),
        _ => call
            .user_agent
            .split('/')
            .next()
            .filter(|p| !p.is_empty())
            .unwrap_or("unknown")
            .to_owned(),
    };
    Ok(WriteOptions {
        manager,
        dry_run,
        force: call.query.flag("force"),
    })
}

fn list_options(query: &Query) -> Result<ListOptions, ApiError> {
    let labels = query
        .get("labelSelector")
        .filter(|s| !s.is_empty())
        .map(LabelSelector::parse)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let fields = query
        .get("fieldSelector")
        .filter(|s| !s.is_empty())
        .map(FieldSelector::parse)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = match query.get("limit") {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit: invalid value {text:?}")))?,
        )
        .filter(|&l| l > 0),
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: query
            .get("continue")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        resource_version: query.get("resourceVersion").map(str::to_owned),
        version_match: query.get("resourceVersionMatch").map(str::to_owned),
    })
}

/// A watch, once its parameters are read.
struct WatchSpec {
    res: usize,
    filter: WatchFilter,
    start: WatchStart,
    timeout: Duration,
    bookmarks: bool,
}

fn watch_response(
    shared: &Arc<Shared>,
    call: &Call,
    res: usize,
    namespace: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let query = &call.query;
    let options = list_options(query)?;
    let bookmarks = query.flag("allowWatchBookmarks");
    let initial_events = query.flag("sendInitialEvents");
    if initial_events {
        if query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::invalid_options(
                "ListOptions",
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to \
                 NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(ApiError::invalid_options(
                "ListOptions",
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    }
    let start =
        match query.get("resourceVersion") {
            None | Some("" | "0") => WatchStart::Current {
                initial_events_end: initial_events,
            },
            Some(_) if initial_events => WatchStart::Current {
                initial_events_end: true,
            },
            Some(text) => WatchStart::After(text.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {text:?}"))
            })?),
        };
    let timeout = match query.get("timeoutSeconds") {
        None | Some("" | "0") => DEFAULT_WATCH_TIMEOUT,
        Some(text) => Duration::from_secs(text.parse().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds: invalid value {text:?}"))
        })?),
    };
    let spec = WatchSpec {
        res,
        filter: WatchFilter {
            res,
            namespace: namespace.map(str::to_owned),
            labels: options.labels,
            fields: options.fields,
        },
        start,
        timeout,
        bookmarks,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let open = OpenWatch::new(shared.clone());
    tokio::spawn(run_watch(open, spec, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Counts an open watch for as long as it lives.
struct OpenWatch(Arc<Shared>);

impl OpenWatch {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_watches.fetch_add(1, Ordering::SeqCst);
        shared.requests_changed.send_modify(|n| *n += 1);
        Self(shared)
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
        self.0.requests_changed.send_modify(|n| *n += 1);
    }
}

async fn send(tx: &mpsc::Sender<Bytes>, event: &Value) -> bool {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    tx.send(Bytes::from(line)).await.is_ok()
}

/// Streams a watch's events until its timeout, the client leaving, the test ending every
/// watch, or an ERROR.
async fn run_watch(open: OpenWatch, spec: WatchSpec, tx: mpsc::Sender<Bytes>) {
    let shared = open.0.clone();
    let mut changed = shared.store_changed.subscribe();
    let interval = *lock(&shared.bookmark_interval);
    let deadline = Instant::now() + spec.timeout;
    let res = &RESOURCES[spec.res];
    let bookmark = |rv: u64, initial_end: bool| {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({
            "type": "BOOKMARK",
            "object": { "kind": res.kind, "apiVersion": res.api_version(), "metadata": metadata },
        })
    };
    let (first, epoch) = {
        let store = lock(&shared.store);
        (
            store.watch_begin(&spec.filter, spec.start),
            store.watch_epoch(),
        )
    };
    let mut cursor = match first {
        WatchStep::Events(lines, cursor) => {
            for line in &lines {
                if !send(&tx, line).await {
                    return;
                }
            }
            cursor
        }
        WatchStep::Gone(line) => {
            send(&tx, &line).await;
            return;
        }
        WatchStep::Ended => return,
    };
    if let WatchStart::Current {
        initial_events_end: true,
    } = spec.start
        && !send(&tx, &bookmark(cursor, true)).await
    {
        return;
    }
    let mut next_bookmark = Instant::now() + interval;
    loop {
        let mut bookmark_due = false;
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep_until(deadline) => return,
            result = changed.changed() => if result.is_err() { return },
            () = tokio::time::sleep_until(next_bookmark), if spec.bookmarks => bookmark_due = true,
        }
        let step = {
            let store = lock(&shared.store);
            if store.watch_epoch() == epoch {
                store.watch_next(&spec.filter, cursor)
            } else {
                WatchStep::Ended
            }
        };
        match step {
            WatchStep::Events(lines, seen) => {
                for line in &lines {
                    if !send(&tx, line).await {
                        return;
                    }
                }
                cursor = seen;
            }
            WatchStep::Gone(line) => {
                send(&tx, &line).await;
                return;
            }
            WatchStep::Ended => return,
        }
        // After the events: a bookmark promises that everything up to its version was sent.
        if bookmark_due {
            if !send(&tx, &bookmark(cursor, false)).await {
                return;
            }
            next_bookmark = Instant::now() + interval;
        }
    }
}

/// `POST .../tokenreviews`: a create-only resource, never stored; the answer is the request
/// with its status filled in, as the real server's (which echoes `spec.token` too).
fn token_review(shared: &Arc<Shared>, call: &Call) -> Result<Response<Body>, ApiError> {
    if call.method != "POST" {
        return Err(ApiError::method_not_allowed());
    }
    let mut review = parse_body(&call.body)?;
    let token = review["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let asked: Vec<String> = match review["spec"]["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![API_AUDIENCE.to_owned()],
    };
    let known = lock(&shared.tokens).get(&token).cloned();
    let refused = |error: String| json!({ "user": {}, "error": error });
    let status = match known {
        None => refused("invalid bearer token".to_owned()),
        Some(sa) => {
            let audiences: Vec<&String> =
                asked.iter().filter(|a| sa.audiences.contains(a)).collect();
            if audiences.is_empty() {
                refused(format!(
                    "[invalid bearer token, token audiences {:?} is invalid for the target \
                     audiences {:?}]",
                    sa.audiences, asked
                ))
            } else {
                let uid = format!("{:x}", {
                    use std::hash::{Hash, Hasher};
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    (&sa.namespace, &sa.name).hash(&mut hasher);
                    hasher.finish()
                });
                json!({
                    "authenticated": true,
                    "user": {
                        "username": format!("system:serviceaccount:{}:{}", sa.namespace, sa.name),
                        "uid": uid,
                        "groups": [
                            "system:serviceaccounts",
                            format!("system:serviceaccounts:{}", sa.namespace),
                            "system:authenticated",
                        ],
                    },
                    "audiences": audiences,
                })
            }
        }
    };
    review["status"] = status;
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    review["kind"] = json!("TokenReview");
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    Ok(json_response(201, &review))
}

/// `/version`, as a recent release reports it.
fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "emulationMajor": "1",
        "emulationMinor": "34",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": "v1.34.0-weft-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
