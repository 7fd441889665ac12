//! JSON merge patch, and field ownership for server-side apply (`metadata.managedFields`).
//!
//! Ownership is tracked per leaf: a scalar, a list or an empty map. Lists are atomic, as they
//! are for a custom resource whose schema gives no `x-kubernetes-list-type`, and as the
//! `WasmFilter` schema has it.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// Paths of leaves, like `["status", "rollout", "selected"]`.
pub(super) type FieldSet = BTreeSet<Vec<String>>;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The object itself: everything but `status` when `/status` is a subresource.
    Main,
    /// The `/status` subresource: only `status`.
    Status,
}

impl Part {
    /// `metadata.managedFields[].subresource`.
    pub(super) fn subresource(self) -> &'static str {
        match self {
            Self::Main => "",
            Self::Status => "status",
        }
    }
}

/// RFC 7386 JSON merge patch.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Drops `null` map values, recursively: the real server prunes them from objects it stores.
pub(super) fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The leaves a write to `part` may own. `status_subresource`: whether `status` belongs to
/// the `/status` subresource rather than to the object.
pub(super) fn tracked_leaves(object: &Value, part: Part, status_subresource: bool) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(map) = object.as_object() else {
        return set;
    };
    for (key, value) in map {
        let owned = match (key.as_str(), part) {
            ("apiVersion" | "kind", _) => false,
            ("metadata", Part::Main) => {
                for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = value.get(field) {
                        leaves(
                            v,
                            &mut vec!["metadata".to_owned(), field.to_owned()],
                            &mut set,
                        );
                    }
                }
                false
            }
            ("status", Part::Main) => !status_subresource,
            ("status", Part::Status) => true,
            (_, Part::Main) => true,
            (_, Part::Status) => false,
        };
        if owned {
            leaves(value, &mut vec![key.clone()], &mut set);
        }
    }
    set
}

/// Every leaf a manager may own: the object's and its status's.
pub(super) fn all_leaves(object: &Value) -> FieldSet {
    let mut set = tracked_leaves(object, Part::Main, true);
    set.extend(tracked_leaves(object, Part::Status, true));
    set
}

fn leaves(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`.
pub(super) fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Sets the value at `path`, creating (or replacing non-map values with) maps on the way.
pub(super) fn set_path(value: &mut Value, path: &[String], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut current = value;
    for key in parents {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = current
            .as_object_mut()
            .map(|m| m.entry(key.clone()).or_insert(Value::Null))
            .unwrap_or_else(|| unreachable!("made a map above"));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    if let Some(map) = current.as_object_mut() {
        map.insert(last.clone(), new);
    }
}

/// Removes the value at `path`, then every map that removal left empty (but not the
/// top-level `metadata`).
pub(super) fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = &mut *value;
    for key in parents {
        match current.get_mut(key) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
    if parents.is_empty() || parents == ["metadata"] {
        return;
    }
    if get_path(value, parents).is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
        remove_path(value, parents);
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ManagedEntry {
    pub(super) manager: String,
    /// `Apply` or `Update`.
    pub(super) operation: &'static str,
    pub(super) subresource: &'static str,
    pub(super) api_version: String,
    pub(super) time: String,
    pub(super) fields: FieldSet,
}

/// The entries of `object`'s `metadata.managedFields`.
pub(super) fn read_entries(object: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| ManagedEntry {
            manager: e["manager"].as_str().unwrap_or("").to_owned(),
            operation: if e["operation"] == "Apply" {
                "Apply"
            } else {
                "Update"
            },
            subresource: if e["subresource"] == "status" {
                "status"
            } else {
                ""
            },
            api_version: e["apiVersion"].as_str().unwrap_or("").to_owned(),
            time: e["time"].as_str().unwrap_or("").to_owned(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `entries` into `object`'s `metadata.managedFields` (removing the key when empty).
pub(super) fn write_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
        return;
    }
    let rendered: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                entry["subresource"] = json!(e.subresource);
            }
            entry
        })
        .collect();
    metadata.insert("managedFields".to_owned(), Value::Array(rendered));
}

/// `{"f:spec": {"f:phase": {}}}` from `[["spec", "phase"]]`.
fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let keyed: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
        set_path(&mut root, &keyed, json!({}));
    }
    root
}

fn from_fields_v1(value: &Value) -> FieldSet {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        match value.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, child) in map {
                    if let Some(field) = key.strip_prefix("f:") {
                        path.push(field.to_owned());
                        walk(child, path, out);
                        path.pop();
                    }
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut set = FieldSet::new();
    walk(value, &mut Vec::new(), &mut set);
    set
}

/// Who writes which part of an object, and when: the context of an ownership change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Writer<'a> {
    pub(super) manager: &'a str,
    pub(super) part: Part,
    /// The resource's `apiVersion`, recorded in the entry.
    pub(super) api_version: &'a str,
    /// Whether `status` belongs to the `/status` subresource.
    pub(super) status_subresource: bool,
    /// RFC 3339, for the entry's `time`.
    pub(super) now: &'a str,
}

impl Writer<'_> {
    fn owns(&self, entry: &ManagedEntry, operation: &str) -> bool {
        entry.manager == self.manager
            && entry.operation == operation
            && entry.subresource == self.part.subresource()
    }

    fn entry<'e>(
        &self,
        entries: &'e mut Vec<ManagedEntry>,
        operation: &'static str,
    ) -> &'e mut ManagedEntry {
        let index = match entries.iter().position(|e| self.owns(e, operation)) {
            Some(index) => index,
            None => {
                entries.push(ManagedEntry {
                    manager: self.manager.to_owned(),
                    operation,
                    subresource: self.part.subresource(),
                    api_version: self.api_version.to_owned(),
                    time: self.now.to_owned(),
                    fields: FieldSet::new(),
                });
                entries.len() - 1
            }
        };
        &mut entries[index]
    }
}

/// Ownership after an update (create, PUT, merge patch): the leaves the writer changed move
/// to its `Update` entry, from whoever owned them.
pub(super) fn record_update(
    entries: &mut Vec<ManagedEntry>,
    writer: &Writer<'_>,
    old: Option<&Value>,
    new: &Value,
) {
    let changed: FieldSet = tracked_leaves(new, writer.part, writer.status_subresource)
        .into_iter()
        .filter(|p| old.and_then(|o| get_path(o, p)) != get_path(new, p))
        .collect();
    if changed.is_empty() {
        return;
    }
    for entry in entries.iter_mut() {
        let before = entry.fields.len();
        entry.fields.retain(|p| !changed.contains(p));
        if entry.fields.len() != before {
            entry.time = writer.now.to_owned();
        }
    }
    let entry = writer.entry(entries, "Update");
    entry.fields.extend(changed);
    entry.time = writer.now.to_owned();
}

/// Server-side apply of `applied` (already reduced to the writer's part) onto `live`: the
/// applied leaves are set, leaves the writer applied before and no longer does are removed
/// unless someone else owns them, and the writer's `Apply` entry owns exactly the applied
/// leaves. Leaves another manager owns with a different value are conflicts, returned as
/// `(manager, .field)` unless `force` takes them over.
pub(super) fn apply(
    live: &Value,
    applied: &Value,
    entries: &mut Vec<ManagedEntry>,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<(String, String)>> {
    let applied_set = tracked_leaves(applied, writer.part, writer.status_subresource);
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| e.manager != writer.manager) {
        for path in entry.fields.intersection(&applied_set) {
            if get_path(live, path) != get_path(applied, path) {
                conflicts.push((entry.manager.clone(), dotted(path)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for entry in entries.iter_mut().filter(|e| e.manager != writer.manager) {
            let before = entry.fields.len();
            entry.fields.retain(|p| {
                !(applied_set.contains(p) && get_path(live, p) != get_path(applied, p))
            });
            if entry.fields.len() != before {
                entry.time = writer.now.to_owned();
            }
        }
    }
    let previous = entries
        .iter()
        .find(|e| writer.owns(e, "Apply"))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut result = live.clone();
    for path in previous.difference(&applied_set) {
        let owned_elsewhere = entries
            .iter()
            .any(|e| !writer.owns(e, "Apply") && e.fields.contains(path));
        if !owned_elsewhere {
            remove_path(&mut result, path);
        }
    }
    for path in &applied_set {
        if let Some(value) = get_path(applied, path) {
            set_path(&mut result, path, value.clone());
        }
    }
    let entry = writer.entry(entries, "Apply");
    if entry.fields != applied_set {
        entry.fields = applied_set;
        entry.time = writer.now.to_owned();
    }
    Ok(result)
}

/// Drops owned paths that are no longer leaves of `object`, and entries left with none.
pub(super) fn prune_entries(entries: &mut Vec<ManagedEntry>, object: &Value) {
    let present = all_leaves(object);
    for entry in entries.iter_mut() {
        entry.fields.retain(|p| present.contains(p));
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// `.status.rollout.selected`: how conflict messages name a field.
pub(super) fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}
