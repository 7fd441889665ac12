//! The resources the fake serves, and the `Status` objects it answers errors with.

use serde_json::{Value, json};

/// One resource type: how it is addressed and which server-side rules apply to it.
#[derive(Debug)]
pub(super) struct Resource {
    /// API group; empty for the core group (`/api/v1`).
    pub(super) group: &'static str,
    pub(super) version: &'static str,
    pub(super) kind: &'static str,
    /// The URL segment, lowercase plural.
    pub(super) plural: &'static str,
    pub(super) namespaced: bool,
    /// Whether `/status` is a subresource: then writes to the object ignore `status` and
    /// writes to `/status` change nothing else.
    pub(super) status_subresource: bool,
    /// Whether `metadata.generation` is kept (1 on create, +1 when anything outside
    /// `metadata` and `status` changes).
    pub(super) generation: bool,
    /// Whether a PUT may omit `metadata.resourceVersion` (true for most built-in types,
    /// false for custom resources).
    pub(super) unconditional_update: bool,
}

impl Resource {
    /// `group/version`, or `version` for the core group.
    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `wasmfilters.weft.dev`, `configmaps`: how messages name the resource.
    pub(super) fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `WasmFilter.weft.dev`, `ConfigMap`: how validation messages name the kind.
    fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `details` of a Status about the object `name`; `kind` is the plural, as the real
    /// server writes it.
    fn details(&self, name: &str) -> Value {
        let mut details = json!({ "name": name, "kind": self.plural });
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        details
    }
}

const fn resource(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        namespaced,
        status_subresource: false,
        generation: false,
        unconditional_update: true,
    }
}

/// Every resource the fake serves. Custom resources: status subresource, generation, and
/// updates must name the resourceVersion they replace.
pub(super) const RESOURCES: &[Resource] = &[
    Resource {
        status_subresource: true,
        generation: true,
        unconditional_update: false,
        ..resource("weft.dev", "v1alpha1", "WasmFilter", "wasmfilters", true)
    },
    resource("", "v1", "ConfigMap", "configmaps", true),
    Resource {
        status_subresource: true,
        ..resource("", "v1", "Service", "services", true)
    },
    Resource {
        status_subresource: true,
        ..resource("", "v1", "Pod", "pods", true)
    },
    resource(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    resource("", "v1", "Secret", "secrets", true),
    Resource {
        status_subresource: true,
        ..resource("", "v1", "Namespace", "namespaces", false)
    },
    resource("", "v1", "Event", "events", true),
    resource("events.k8s.io", "v1", "Event", "events", true),
    resource("coordination.k8s.io", "v1", "Lease", "leases", true),
    Resource {
        status_subresource: true,
        generation: true,
        unconditional_update: false,
        ..resource(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
    },
];

/// The index in [`RESOURCES`] of `plural` in `group`/`version`.
pub(super) fn by_plural(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The index in [`RESOURCES`] of `kind` in `api_version`.
pub(super) fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// Whether `group`/`version` is served at all.
pub(super) fn serves_group_version(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
}

/// An error answered as a `Status` object, shaped as the real API server shapes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ApiError {
    pub(super) code: u16,
    pub(super) reason: &'static str,
    pub(super) message: String,
    pub(super) details: Option<Value>,
    /// Seconds, sent as `Retry-After` and `details.retryAfterSeconds`.
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The `Status` object.
    pub(super) fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = self.details.clone();
        if let Some(seconds) = self.retry_after {
            details.get_or_insert_with(|| json!({}))["retryAfterSeconds"] = json!(seconds);
        }
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }

    pub(super) fn not_found(res: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", res.qualified_plural()),
        )
        .with_details(res.details(name))
    }

    pub(super) fn namespace_not_found(namespace: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("namespaces {namespace:?} not found"),
        )
        .with_details(json!({ "name": namespace, "kind": "namespaces" }))
    }

    /// A path that names no resource.
    pub(super) fn unknown_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub(super) fn already_exists(res: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", res.qualified_plural()),
        )
        .with_details(res.details(name))
    }

    /// A write naming a resourceVersion that is no longer the object's.
    pub(super) fn conflict(res: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                res.qualified_plural()
            ),
        )
        .with_details(res.details(name))
    }

    /// A delete whose preconditions do not hold.
    pub(super) fn precondition_failed(res: &Resource, name: &str, message: String) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {message}",
                res.qualified_plural()
            ),
        )
        .with_details(res.details(name))
    }

    /// A server-side apply that would take fields another manager owns.
    pub(super) fn apply_conflicts(
        res: &Resource,
        name: &str,
        conflicts: &[(String, String)],
    ) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {manager:?} using {}", res.api_version()),
                    "field": field,
                })
            })
            .collect();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(manager, field)| format!("- {manager}: {field}"))
            .collect();
        let mut details = res.details(name);
        details["causes"] = json!(causes);
        Self::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                list.join("\n")
            ),
        )
        .with_details(details)
    }

    /// A field of the object is invalid.
    pub(super) fn invalid(
        res: &Resource,
        name: &str,
        field: &str,
        cause_reason: &str,
        detail: &str,
    ) -> Self {
        let mut details = res.details(name);
        details["kind"] = json!(res.kind);
        details["causes"] = json!([{ "reason": cause_reason, "message": detail, "field": field }]);
        Self::new(
            422,
            "Invalid",
            format!(
                "{} {name:?} is invalid: {field}: {detail}",
                res.qualified_kind()
            ),
        )
        .with_details(details)
    }

    /// Invalid request options (`PatchOptions`, `ListOptions`, ...).
    pub(super) fn invalid_options(kind: &str, field: &str, detail: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind}.meta.k8s.io \"\" is invalid: {field}: {detail}"),
        )
        .with_details(json!({
            "group": "meta.k8s.io",
            "kind": kind,
            "causes": [{ "reason": "FieldValueInvalid", "message": detail, "field": field }],
        }))
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
            .with_details(json!({ "causes": [{ "message": "" }] }))
    }

    /// A resourceVersion older than the kept history (watch) or a continue token whose
    /// snapshot is gone (list).
    pub(super) fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub(super) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub(super) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub(super) fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The error a test asked for with `fail_next`; the reason the real server gives that
    /// code, and `Retry-After: 1` on 429 as API priority and fairness sends it.
    pub(super) fn injected(code: u16, method: &str, path: &str) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let mut error = Self::new(
            code,
            reason,
            format!("fake API server: injected failure for {method} {path}"),
        );
        if code == 429 {
            error.retry_after = Some(1);
        }
        error
    }
}
