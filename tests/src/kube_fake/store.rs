//! The fake's state and the API semantics over it: objects, one resourceVersion counter,
//! and the bounded event history that watches replay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde_json::{Value, json};

use super::fields::{self, ManagedEntry, Part, Writer};
use super::resources::{ApiError, RESOURCES, Resource, by_kind};
use super::select::{FieldSelector, LabelSelector};

/// Events kept for watches to replay; a watch from an older resourceVersion gets 410 Gone.
const DEFAULT_HISTORY: usize = 1000;
/// List snapshots kept for continue tokens.
const SNAPSHOTS: usize = 8;
/// The manager of writes made through the test hooks.
const DIRECT_MANAGER: &str = "kube-fake";
/// The real server's message for a continue token it no longer has the snapshot for.
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a \
    consistent list result. You can start a new list without the continue parameter, or use \
    the continue token in this response to retrieve the remainder of the results. Continuing \
    with the provided token results in an inconsistent list - objects that were created, \
    modified, or deleted between the time the first chunk was returned and now may show up in \
    the list.";

/// Where an object lives. Cluster-scoped objects have an empty namespace. Ordered as etcd
/// orders keys, which is the order of lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub(super) res: usize,
    pub(super) namespace: String,
    pub(super) name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    key: Key,
    kind: EventKind,
    object: Value,
    /// The state before a modification, to turn it into ADDED or DELETED for a watch whose
    /// selector the object starts or stops matching.
    previous: Option<Value>,
}

/// Options of one write request.
#[derive(Debug, Clone, Default)]
pub(super) struct WriteOptions {
    /// `fieldManager`, or the User-Agent's product as the real server derives it.
    pub(super) manager: String,
    /// `dryRun=All`: everything but storing.
    pub(super) dry_run: bool,
    /// `force=true` on a server-side apply: take fields other managers own.
    pub(super) force: bool,
}

/// Options of LIST and DELETE-collection.
#[derive(Debug, Clone, Default)]
pub(super) struct ListOptions {
    pub(super) labels: Option<LabelSelector>,
    pub(super) fields: Option<FieldSelector>,
    pub(super) limit: Option<usize>,
    pub(super) continue_token: Option<String>,
    pub(super) resource_version: Option<String>,
    pub(super) version_match: Option<String>,
}

/// What a watch sees.
#[derive(Debug, Clone)]
pub(super) struct WatchFilter {
    pub(super) res: usize,
    pub(super) namespace: Option<String>,
    pub(super) labels: Option<LabelSelector>,
    pub(super) fields: Option<FieldSelector>,
}

impl WatchFilter {
    fn selects(&self, key: &Key, object: &Value) -> bool {
        key.res == self.res
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
            && self.labels.as_ref().is_none_or(|s| s.matches(object))
            && self.fields.as_ref().is_none_or(|s| s.matches(object))
    }

    /// The watch event for `event`, if this watch sees it.
    fn line(&self, event: &Event) -> Option<Value> {
        if event.key.res != self.res {
            return None;
        }
        let now = self.selects(&event.key, &event.object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.selects(&event.key, p));
        let kind = match (event.kind, before, now) {
            (EventKind::Added, _, true) => "ADDED",
            (EventKind::Modified, true, true) => "MODIFIED",
            (EventKind::Modified, false, true) => "ADDED",
            (EventKind::Modified, true, false) => "DELETED",
            (EventKind::Deleted, _, true) => "DELETED",
            _ => return None,
        };
        Some(json!({ "type": kind, "object": event.object }))
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum WatchStart {
    /// `resourceVersion` unset or `0`: synthetic ADDED events for the current state, then
    /// changes. `initial_events_end`: `sendInitialEvents=true`, which ends the initial events
    /// with a bookmark annotated `k8s.io/initial-events-end`.
    Current { initial_events_end: bool },
    /// Every change after this resourceVersion.
    After(u64),
}

/// One step of a watch.
#[derive(Debug)]
pub(super) enum WatchStep {
    /// Events to send (may be empty), and the resourceVersion the watch has now seen up to.
    Events(Vec<Value>, u64),
    /// The history the watch needs is gone: send this ERROR event and end.
    Gone(Value),
    /// The test ended every watch.
    Ended,
}

/// The state.
#[derive(Debug)]
pub(super) struct Store {
    rv: u64,
    uid_seed: u64,
    uids: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Event>,
    history_limit: usize,
    /// The oldest resourceVersion a watch may start after: every later event is kept.
    oldest_watchable: u64,
    /// Bumped to end every open watch.
    watch_epoch: u64,
    snapshots: BTreeMap<u64, Arc<BTreeMap<Key, Value>>>,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn namespace_index() -> usize {
    by_kind("v1", "Namespace").unwrap_or_else(|| unreachable!("namespaces are in the table"))
}

/// `metadata` of `object`, created if missing.
fn metadata(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .unwrap_or_else(|| unreachable!("made a map above"))
}

fn remove_key(object: &mut Value, key: &str) {
    if let Some(map) = object.as_object_mut() {
        map.remove(key);
    }
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or("")
}

/// Metadata only the server writes.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Everything but metadata and status: what bumps `generation` when it changes.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The object without what changes on every write, to tell a no-op write (which the real
/// server does not store: no new resourceVersion, no event).
fn content(object: &Value) -> Value {
    let mut copy = object.clone();
    let meta = metadata(&mut copy);
    meta.remove("resourceVersion");
    if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
        for entry in entries {
            if let Some(entry) = entry.as_object_mut() {
                entry.remove("time");
            }
        }
    }
    copy
}

fn finalizers(object: &Value) -> Vec<&str> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn is_terminating(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some()
}

/// Checks a name as the real server does: a DNS subdomain, or a DNS label for namespaces.
fn check_name(res: &Resource, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid(
            res,
            name,
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        ));
    }
    let label = res.kind == "Namespace";
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = name.len() <= if label { 63 } else { 253 }
        && name
            .chars()
            .all(|c| alnum(c) || c == '-' || (c == '.' && !label))
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if valid {
        return Ok(());
    }
    let (what, example) = if label {
        ("label", "'my-name',  or '123-abc'")
    } else {
        ("subdomain", "'example.com'")
    };
    Err(ApiError::invalid(
        res,
        name,
        "metadata.name",
        "FieldValueInvalid",
        &format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 {what} must consist of lower case \
             alphanumeric characters, '-'{} and must start and end with an alphanumeric \
             character (e.g. {example})",
            if label { "" } else { " or '.'" }
        ),
    ))
}

/// Checks that `body` is an object of `res`, filling in a missing apiVersion and kind.
fn check_body(res: &Resource, mut body: Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {} object",
            res.kind
        )));
    }
    let expected = res.api_version();
    match body["apiVersion"].as_str() {
        None | Some("") => body["apiVersion"] = json!(expected),
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version \
                 ({expected})"
            )));
        }
    }
    match body["kind"].as_str() {
        None | Some("") => body["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
    }
    if !body["metadata"].is_null() && !body["metadata"].is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(body)
}

/// Checks the body's name and namespace against the URL's.
fn check_identity(
    res: &Resource,
    body: &Value,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let body_name = meta_str(body, "name");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_namespace = meta_str(body, "namespace");
    if res.namespaced && !body_namespace.is_empty() && body_namespace != namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Kind-specific defaulting: Secret `stringData` folds into `data`; a Namespace gets its
/// finalizer, phase and name label.
fn normalize(res: &Resource, object: &mut Value) {
    match (res.group, res.kind) {
        ("", "Secret") => {
            if let Some(Value::Object(strings)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (key, value) in strings {
                    let text = value.as_str().unwrap_or("").to_owned();
                    object["data"][key] =
                        json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            if object["type"].as_str().is_none_or(str::is_empty) {
                object["type"] = json!("Opaque");
            }
        }
        ("", "Namespace") => {
            let name = meta_str(object, "name").to_owned();
            metadata(object)
                .entry("labels")
                .or_insert_with(|| json!({}))["kubernetes.io/metadata.name"] = json!(name);
            if object["spec"]["finalizers"].is_null() {
                object["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if object["status"]["phase"].is_null() {
                object["status"]["phase"] = json!("Active");
            }
        }
        _ => {}
    }
}

/// The next state of `old` given the `candidate` a write to `part` proposes: server-owned
/// metadata kept, the other part kept (status subresource semantics), generation bumped when
/// anything outside metadata and status changed.
fn prepare_update(res: &Resource, old: &Value, candidate: Value, part: Part) -> Value {
    let mut new = match part {
        Part::Status => {
            let mut new = old.clone();
            match candidate.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => remove_key(&mut new, "status"),
            }
            new
        }
        Part::Main => {
            let mut new = candidate;
            if res.status_subresource {
                match old.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => remove_key(&mut new, "status"),
                }
            }
            new
        }
    };
    let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
    let meta = metadata(&mut new);
    for field in SERVER_METADATA {
        match old_meta.get(*field) {
            Some(value) => meta.insert((*field).to_owned(), value.clone()),
            None => meta.remove(*field),
        };
    }
    new["apiVersion"] = json!(res.api_version());
    new["kind"] = json!(res.kind);
    fields::strip_nulls(&mut new);
    normalize(res, &mut new);
    if res.generation && spec_part(old) != spec_part(&new) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        metadata(&mut new).insert("generation".to_owned(), json!(generation));
    }
    new
}

fn success_status(res: &Resource, name: &str, uid: &str) -> Value {
    let mut details = json!({ "name": name, "kind": res.plural, "uid": uid });
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// How ownership of a new object's fields is recorded.
enum Ownership<'a> {
    Update(&'a str),
    Apply(&'a str),
}

impl Store {
    /// An empty store, with the namespaces every cluster has.
    pub(super) fn new(uid_seed: u64) -> Self {
        let mut store = Self {
            rv: 0,
            uid_seed,
            uids: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY,
            oldest_watchable: 0,
            watch_epoch: 0,
            snapshots: BTreeMap::new(),
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create_namespace(name)
                .unwrap_or_else(|e| unreachable!("built-in namespace {name}: {e:?}"));
        }
        store
    }

    /// The current resourceVersion.
    pub(super) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(super) fn watch_epoch(&self) -> u64 {
        self.watch_epoch
    }

    fn key(res: usize, namespace: &str, name: &str) -> Key {
        Key {
            res,
            namespace: if RESOURCES[res].namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        let n = self.uids;
        let seed = self.uid_seed;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (seed >> 32) as u32,
            (seed >> 16) as u16,
            seed & 0xfff,
            (n >> 48) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects
            .contains_key(&Self::key(namespace_index(), "", namespace))
    }

    fn create_namespace(&mut self, name: &str) -> Result<Value, ApiError> {
        let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        self.create_object(
            namespace_index(),
            String::new(),
            name.to_owned(),
            body,
            Ownership::Update(DIRECT_MANAGER),
            false,
            false,
        )
    }

    fn record(&mut self, key: Key, kind: EventKind, object: Value, previous: Option<Value>) {
        self.history.push_back(Event {
            rv: self.rv,
            key,
            kind,
            object,
            previous,
        });
        while self.history.len() > self.history_limit {
            if let Some(evicted) = self.history.pop_front() {
                self.oldest_watchable = evicted.rv;
            }
        }
    }

    fn set_rv(object: &mut Value, rv: u64) {
        metadata(object).insert("resourceVersion".to_owned(), json!(rv.to_string()));
    }

    fn insert_new(&mut self, key: Key, mut object: Value) -> Value {
        self.rv += 1;
        Self::set_rv(&mut object, self.rv);
        self.objects.insert(key.clone(), object.clone());
        self.record(key, EventKind::Added, object.clone(), None);
        object
    }

    fn replace_existing(&mut self, key: Key, old: Value, mut new: Value) -> Value {
        self.rv += 1;
        Self::set_rv(&mut new, self.rv);
        self.objects.insert(key.clone(), new.clone());
        self.record(key, EventKind::Modified, new.clone(), Some(old));
        new
    }

    /// Removes the object; the DELETED event carries the deletion's resourceVersion.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.rv += 1;
        Self::set_rv(&mut object, self.rv);
        self.record(key.clone(), EventKind::Deleted, object.clone(), None);
        Some(object)
    }

    /// Creates an object after the request-level checks.
    #[allow(clippy::too_many_arguments)]
    fn create_object(
        &mut self,
        res_index: usize,
        namespace: String,
        name: String,
        mut object: Value,
        ownership: Ownership<'_>,
        dry_run: bool,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[res_index];
        check_name(res, &name)?;
        if res.namespaced && !self.namespace_exists(&namespace) {
            return Err(ApiError::namespace_not_found(&namespace));
        }
        let key = Self::key(res_index, &namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(res, &name));
        }
        let now = now();
        {
            let meta = metadata(&mut object);
            for field in SERVER_METADATA {
                meta.remove(*field);
            }
            meta.insert("name".to_owned(), json!(name));
            if res.namespaced {
                meta.insert("namespace".to_owned(), json!(namespace));
            }
        }
        if res.status_subresource && !keep_status {
            remove_key(&mut object, "status");
        }
        fields::strip_nulls(&mut object);
        normalize(res, &mut object);
        let uid = self.next_uid();
        let meta = metadata(&mut object);
        meta.insert("uid".to_owned(), json!(uid));
        meta.insert("creationTimestamp".to_owned(), json!(now));
        if res.generation {
            meta.insert("generation".to_owned(), json!(1));
        }
        let api_version = res.api_version();
        let mut entries = Vec::new();
        let writer = |manager, part| Writer {
            manager,
            part,
            api_version: &api_version,
            status_subresource: res.status_subresource,
            now: &now,
        };
        match ownership {
            Ownership::Update(manager) => {
                fields::record_update(&mut entries, &writer(manager, Part::Main), None, &object);
                if keep_status && res.status_subresource {
                    let status = writer(manager, Part::Status);
                    fields::record_update(&mut entries, &status, None, &object);
                }
            }
            Ownership::Apply(manager) => {
                let _ = fields::apply(
                    &object,
                    &object,
                    &mut entries,
                    &writer(manager, Part::Main),
                    true,
                );
            }
        }
        fields::write_entries(&mut object, &entries);
        if dry_run {
            return Ok(object);
        }
        Ok(self.insert_new(key, object))
    }

    /// Stores `new` as the next state of `old`, with `entries` as its managed fields. A write
    /// that changes nothing stores nothing and returns `old`, as the real server does.
    fn finish_update(
        &mut self,
        key: Key,
        old: Value,
        mut new: Value,
        mut entries: Vec<ManagedEntry>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[key.res];
        fields::prune_entries(&mut entries, &new);
        fields::write_entries(&mut new, &entries);
        if is_terminating(&old) {
            let before = finalizers(&old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    res,
                    &key.name,
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if content(&old) == content(&new) {
            return Ok(old);
        }
        if dry_run {
            return Ok(new);
        }
        if is_terminating(&new) && finalizers(&new).is_empty() {
            self.objects.insert(key.clone(), new);
            return Ok(self.remove(&key).unwrap_or_default());
        }
        Ok(self.replace_existing(key, old, new))
    }

    fn writer<'a>(
        res: &Resource,
        api_version: &'a str,
        manager: &'a str,
        part: Part,
        now: &'a str,
    ) -> Writer<'a> {
        Writer {
            manager,
            part,
            api_version,
            status_subresource: res.status_subresource,
            now,
        }
    }

    fn existing(
        &self,
        res_index: usize,
        namespace: &str,
        name: &str,
    ) -> Result<(Key, Value), ApiError> {
        let key = Self::key(res_index, namespace, name);
        match self.objects.get(&key) {
            Some(object) => Ok((key, object.clone())),
            None => Err(ApiError::not_found(&RESOURCES[res_index], name)),
        }
    }

    /// GET.
    pub(super) fn get(&self, res: usize, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.existing(res, namespace, name)
            .map(|(_, object)| object)
    }

    /// The objects of `res`, in list order, for the test hooks.
    pub(super) fn all(&self, res: usize, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.res == res && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// LIST, with selectors and pages. Later pages read the snapshot the first page was
    /// served from, as etcd serves them at the first page's revision.
    pub(super) fn list(
        &mut self,
        res_index: usize,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[res_index];
        let selected = |key: &Key, object: &Value| {
            key.res == res_index
                && namespace.is_none_or(|ns| key.namespace == ns)
                && options.labels.as_ref().is_none_or(|s| s.matches(object))
                && options.fields.as_ref().is_none_or(|s| s.matches(object))
        };
        let (rv, after, snapshot) = match &options.continue_token {
            Some(token) => {
                if options
                    .resource_version
                    .as_deref()
                    .is_some_and(|v| !v.is_empty())
                {
                    return Err(ApiError::bad_request(
                        "specifying resource version is not allowed when using continue",
                    ));
                }
                let (rv, start) = decode_continue(token).map_err(ApiError::bad_request)?;
                let snapshot = self
                    .snapshots
                    .get(&rv)
                    .cloned()
                    .ok_or_else(|| ApiError::expired(CONTINUE_EXPIRED))?;
                (rv, Some(start), Some(snapshot))
            }
            None => match self.list_version(options)? {
                Some(rv) if rv != self.rv => (rv, None, self.snapshots.get(&rv).cloned()),
                _ => (self.rv, None, None),
            },
        };
        let source = snapshot.as_deref().unwrap_or(&self.objects);
        let start = Key {
            res: res_index,
            namespace: String::new(),
            name: String::new(),
        };
        let mut items = Vec::new();
        let mut remaining = 0usize;
        let mut last = None;
        for (key, object) in source
            .range(start..)
            .take_while(|(k, _)| k.res == res_index)
        {
            if after
                .as_ref()
                .is_some_and(|a| (&key.namespace, &key.name) <= (&a.0, &a.1))
                || !selected(key, object)
            {
                continue;
            }
            if options.limit.is_some_and(|limit| items.len() >= limit) {
                remaining += 1;
                continue;
            }
            last = Some(key.clone());
            items.push(object.clone());
        }
        if res.group.is_empty() {
            // Built-in types list their items without apiVersion and kind.
            for item in &mut items {
                remove_key(item, "apiVersion");
                remove_key(item, "kind");
            }
        }
        let mut list_meta = json!({ "resourceVersion": rv.to_string() });
        if remaining > 0
            && let Some(last) = last
        {
            if snapshot.is_none() {
                self.snapshots
                    .entry(rv)
                    .or_insert_with(|| Arc::new(self.objects.clone()));
                while self.snapshots.len() > SNAPSHOTS {
                    self.snapshots.pop_first();
                }
            }
            list_meta["continue"] = json!(encode_continue(rv, &last, res.namespaced));
            list_meta["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": list_meta,
            "items": items,
        }))
    }

    /// The resourceVersion a LIST asks for; `None` for the current state.
    fn list_version(&self, options: &ListOptions) -> Result<Option<u64>, ApiError> {
        let Some(text) = options
            .resource_version
            .as_deref()
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let rv: u64 = text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {text:?}")))?;
        if rv == 0 {
            return Ok(None);
        }
        match options.version_match.as_deref() {
            Some("Exact") if rv != self.rv && !self.snapshots.contains_key(&rv) => Err(
                ApiError::expired(format!("too old resource version: {rv} ({})", self.rv)),
            ),
            Some("Exact") => Ok(Some(rv)),
            _ if rv > self.rv => Err(ApiError::timeout(format!(
                "Too large resource version: {rv}, current: {}",
                self.rv
            ))),
            _ => Ok(None),
        }
    }

    /// POST.
    pub(super) fn create(
        &mut self,
        res_index: usize,
        namespace: &str,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[res_index];
        let mut body = check_body(res, body)?;
        let body_namespace = meta_str(&body, "namespace");
        if res.namespaced && !body_namespace.is_empty() && body_namespace != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if !meta_str(&body, "resourceVersion").is_empty() {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = meta_str(&body, "name").to_owned();
        let generate = meta_str(&body, "generateName").to_owned();
        if name.is_empty() && !generate.is_empty() {
            self.uids += 1;
            name = format!("{generate}{}", suffix(self.uid_seed ^ self.uids));
            metadata(&mut body).insert("name".to_owned(), json!(name));
        }
        self.create_object(
            res_index,
            namespace.to_owned(),
            name,
            body,
            Ownership::Update(&options.manager),
            options.dry_run,
            false,
        )
    }

    /// PUT of the object or its status.
    pub(super) fn replace(
        &mut self,
        res_index: usize,
        namespace: &str,
        name: &str,
        part: Part,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[res_index];
        let body = check_body(res, body)?;
        check_identity(res, &body, namespace, name)?;
        let (key, old) = self.existing(res_index, namespace, name)?;
        match meta_str(&body, "resourceVersion") {
            "" if !res.unconditional_update => {
                return Err(ApiError::invalid(
                    res,
                    name,
                    "metadata.resourceVersion",
                    "FieldValueInvalid",
                    "Invalid value: 0x0: must be specified for an update",
                ));
            }
            "" => {}
            rv if rv != meta_str(&old, "resourceVersion") => {
                return Err(ApiError::conflict(res, name));
            }
            _ => {}
        }
        let new = prepare_update(res, &old, body, part);
        let (api_version, now) = (res.api_version(), now());
        let mut entries = fields::read_entries(&old);
        let writer = Self::writer(res, &api_version, &options.manager, part, &now);
        fields::record_update(&mut entries, &writer, Some(&old), &new);
        self.finish_update(key, old, new, entries, options.dry_run)
    }

    /// PATCH with a JSON merge patch.
    pub(super) fn merge(
        &mut self,
        res_index: usize,
        namespace: &str,
        name: &str,
        part: Part,
        patch: &Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[res_index];
        if !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let (key, old) = self.existing(res_index, namespace, name)?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(res, name));
        }
        let mut candidate = old.clone();
        fields::merge_patch(&mut candidate, patch);
        check_identity(res, &candidate, namespace, name)?;
        let new = prepare_update(res, &old, candidate, part);
        let (api_version, now) = (res.api_version(), now());
        let mut entries = fields::read_entries(&old);
        let writer = Self::writer(res, &api_version, &options.manager, part, &now);
        fields::record_update(&mut entries, &writer, Some(&old), &new);
        self.finish_update(key, old, new, entries, options.dry_run)
    }

    /// PATCH with server-side apply; 201 when it created the object.
    pub(super) fn apply(
        &mut self,
        res_index: usize,
        namespace: &str,
        name: &str,
        part: Part,
        patch: Value,
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let res = &RESOURCES[res_index];
        if !patch.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        for (field, expected) in [
            ("apiVersion", res.api_version()),
            ("kind", res.kind.to_owned()),
        ] {
            match patch[field].as_str() {
                None | Some("") => {
                    return Err(ApiError::bad_request(format!(
                        "invalid object: {field} must be set in an apply patch"
                    )));
                }
                Some(v) if v != expected => {
                    return Err(ApiError::bad_request(format!(
                        "the {field} in the data ({v}) does not match the expected {field} \
                         ({expected})"
                    )));
                }
                Some(_) => {}
            }
        }
        if patch["metadata"].get("managedFields").is_some() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        check_identity(res, &patch, namespace, name)?;
        let precondition = patch["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        let key = Self::key(res_index, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            if part == Part::Status {
                return Err(ApiError::not_found(res, name));
            }
            if precondition.is_some() {
                return Err(ApiError::conflict(res, name));
            }
            let created = self.create_object(
                res_index,
                namespace.to_owned(),
                name.to_owned(),
                patch,
                Ownership::Apply(&options.manager),
                options.dry_run,
                false,
            )?;
            return Ok((201, created));
        };
        if precondition.is_some_and(|rv| rv != meta_str(&old, "resourceVersion")) {
            return Err(ApiError::conflict(res, name));
        }
        let (api_version, now) = (res.api_version(), now());
        let mut entries = fields::read_entries(&old);
        let writer = Self::writer(res, &api_version, &options.manager, part, &now);
        let candidate = fields::apply(&old, &patch, &mut entries, &writer, options.force)
            .map_err(|conflicts| ApiError::apply_conflicts(res, name, &conflicts))?;
        let new = prepare_update(res, &old, candidate, part);
        let stored = self.finish_update(key, old, new, entries, options.dry_run)?;
        Ok((200, stored))
    }

    /// DELETE: the Status of an immediate deletion, or the object when finalizers hold it.
    pub(super) fn delete(
        &mut self,
        res_index: usize,
        namespace: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let res = &RESOURCES[res_index];
        let (key, old) = self.existing(res_index, namespace, name)?;
        let preconditions = &options["preconditions"];
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(expected) = preconditions[field].as_str()
                && expected != meta_str(&old, field)
            {
                return Err(ApiError::precondition_failed(
                    res,
                    name,
                    format!(
                        "Precondition failed: {label} in precondition: {expected}, {label} in \
                         object meta: {}",
                        meta_str(&old, field)
                    ),
                ));
            }
        }
        if dry_run {
            return Ok(old);
        }
        if res_index == namespace_index() {
            return Ok(self.delete_namespace(key, old));
        }
        if !finalizers(&old).is_empty() {
            if is_terminating(&old) {
                return Ok(old);
            }
            let mut new = old.clone();
            let meta = metadata(&mut new);
            meta.insert("deletionTimestamp".to_owned(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            return Ok(self.replace_existing(key, old, new));
        }
        let uid = meta_str(&old, "uid").to_owned();
        self.remove(&key);
        Ok(success_status(res, name, &uid))
    }

    /// A namespace goes with everything in it (at once: the fake runs no namespace
    /// controller, and ignores the contents' finalizers).
    fn delete_namespace(&mut self, key: Key, old: Value) -> Value {
        let contents: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| RESOURCES[k.res].namespaced && k.namespace == key.name)
            .cloned()
            .collect();
        for content in contents {
            self.remove(&content);
        }
        self.remove(&key);
        let mut terminating = old;
        metadata(&mut terminating).insert("deletionTimestamp".to_owned(), json!(now()));
        terminating["status"]["phase"] = json!("Terminating");
        terminating
    }

    /// DELETE of a collection: the list of what was deleted.
    pub(super) fn delete_collection(
        &mut self,
        res_index: usize,
        namespace: Option<&str>,
        options: &ListOptions,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut list = self.list(
            res_index,
            namespace,
            &ListOptions {
                limit: None,
                continue_token: None,
                ..options.clone()
            },
        )?;
        let mut deleted = Vec::new();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        for item in items {
            let (ns, name) = (meta_str(&item, "namespace"), meta_str(&item, "name"));
            let result = self.delete(res_index, ns, name, &json!({}), dry_run)?;
            deleted.push(if result["kind"] == "Status" {
                item
            } else {
                result
            });
        }
        list["items"] = json!(deleted);
        Ok(list)
    }

    /// The test hook: creates or replaces `object` as given, status included (the status
    /// is kept when `object` has none). Creates a missing namespace.
    pub(super) fn put_direct(&mut self, object: Value) -> Result<Value, ApiError> {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let res_index = by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("the fake does not serve {api_version} {kind}"))
        })?;
        let res = &RESOURCES[res_index];
        let name = meta_str(&object, "name").to_owned();
        let namespace = match meta_str(&object, "namespace") {
            "" if res.namespaced => "default".to_owned(),
            ns => ns.to_owned(),
        };
        if res.namespaced && !self.namespace_exists(&namespace) {
            self.create_namespace(&namespace)?;
        }
        let key = Self::key(res_index, &namespace, &name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return self.create_object(
                res_index,
                namespace,
                name,
                object,
                Ownership::Update(DIRECT_MANAGER),
                false,
                true,
            );
        };
        let status = object.get("status").or(old.get("status")).cloned();
        let mut new = prepare_update(res, &old, object, Part::Main);
        if res.status_subresource {
            match status {
                Some(status) => new["status"] = status,
                None => remove_key(&mut new, "status"),
            }
        }
        let (api_version, now) = (res.api_version(), now());
        let mut entries = fields::read_entries(&old);
        for part in [Part::Main, Part::Status] {
            let writer = Self::writer(res, &api_version, DIRECT_MANAGER, part, &now);
            fields::record_update(&mut entries, &writer, Some(&old), &new);
        }
        self.finish_update(key, old, new, entries, false)
    }

    /// Drops the event history and ends every watch, after a write elsewhere in the
    /// "cluster" moved the resourceVersion on: a watch resumed from any version seen so far
    /// gets 410 Gone, and the watcher must list again.
    pub(super) fn compact(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.oldest_watchable = self.rv;
        self.snapshots.clear();
        self.watch_epoch += 1;
    }

    /// Ends every watch (their streams close, as on `timeoutSeconds`).
    pub(super) fn drop_watches(&mut self) {
        self.watch_epoch += 1;
    }

    /// Sets how many events are kept for watches to replay.
    pub(super) fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        while self.history.len() > self.history_limit {
            if let Some(evicted) = self.history.pop_front() {
                self.oldest_watchable = evicted.rv;
            }
        }
    }

    fn gone(&self, rv: u64) -> Value {
        let error = ApiError::expired(format!(
            "too old resource version: {rv} ({})",
            self.oldest_watchable + 1
        ));
        json!({ "type": "ERROR", "object": error.status() })
    }

    /// Starts a watch: its first events and the resourceVersion it has seen up to.
    pub(super) fn watch_begin(&self, filter: &WatchFilter, start: WatchStart) -> WatchStep {
        match start {
            WatchStart::After(rv) if rv < self.oldest_watchable => WatchStep::Gone(self.gone(rv)),
            WatchStart::After(rv) => self.watch_next(filter, rv),
            WatchStart::Current { .. } => {
                let lines = self
                    .objects
                    .iter()
                    .filter(|(k, v)| filter.selects(k, v))
                    .map(|(_, v)| json!({ "type": "ADDED", "object": v }))
                    .collect();
                WatchStep::Events(lines, self.rv)
            }
        }
    }

    /// The events after `cursor` that the watch sees.
    pub(super) fn watch_next(&self, filter: &WatchFilter, cursor: u64) -> WatchStep {
        if cursor < self.oldest_watchable {
            return WatchStep::Gone(self.gone(cursor));
        }
        let first = self.history.partition_point(|e| e.rv <= cursor);
        let lines = self
            .history
            .range(first..)
            .filter_map(|e| filter.line(e))
            .collect();
        WatchStep::Events(lines, self.rv.max(cursor))
    }
}

/// Five characters for `generateName`, as the real server appends.
fn suffix(mut n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    n = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..5)
        .map(|i| ALPHABET[((n >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// The real server's continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":KEY}`.
fn encode_continue(rv: u64, last: &Key, namespaced: bool) -> String {
    let start = if namespaced {
        format!("{}/{}\u{0}", last.namespace, last.name)
    } else {
        format!("{}\u{0}", last.name)
    };
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": start });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// The resourceVersion and the (namespace, name) a continue token resumes after.
fn decode_continue(token: &str) -> Result<(u64, (String, String)), String> {
    let invalid = |why: &str| format!("continue key is not valid: {why}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| invalid(&e.to_string()))?;
    let token: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(&e.to_string()))?;
    if token["v"] != "meta.k8s.io/v1" {
        return Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    let rv = token["rv"]
        .as_u64()
        .ok_or_else(|| invalid("no resourceVersion"))?;
    let start = token["start"]
        .as_str()
        .ok_or_else(|| invalid("no start key"))?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    let (namespace, name) = start.split_once('/').unwrap_or(("", start));
    Ok((rv, (namespace.to_owned(), name.to_owned())))
}
