//! The `WasmFilter` definition: which module to run, with which config, on which proxies.
//!
//! The shape is that of the Kubernetes custom resource (group `weft.dev`, version
//! `v1alpha1`), so that a definition file and a cluster object read the same:
//!
//! ```yaml
//! apiVersion: weft.dev/v1alpha1      # optional in a file; if present must be this
//! kind: WasmFilter                   # optional; if present must be this
//! metadata:
//!   name: rate-limit                 # required; lowercase letters, digits, '-', '.'
//!   namespace: default               # default "default"
//! spec:
//!   module:
//!     file: rate_limit.wasm          # relative to the definition file's directory
//!   sha256: "<64 lowercase hex>"     # optional; if given, the module must match it
//!   config: { any: yaml }            # optional; handed to the filter as JSON
//!   selector:
//!     matchLabels: { app: demo }     # optional; empty selects every proxy of the namespace
//!   phase: Authn                     # Authn | Authz | Stats | Unspecified (default)
//!   priority: 0                      # within a phase, higher runs first
//!   match:                           # optional; unset fields match everything
//!     direction: Inbound             # Inbound | Outbound
//!     routes: [billing-api]
//!     pathPrefixes: [/api]
//!     methods: [GET, POST]
//!   failurePolicy: FailClosed        # FailClosed (default) | FailOpen
//!   timeBudget: 50ms                 # optional; more than 0, at most 10s
//!   maxMemory: 32MiB                 # optional; 1MiB to 4GiB
//! ```
//!
//! Checking happens in two steps. serde rejects unknown keys and wrong types while reading;
//! then [`WasmFilterSpec::resolve`] checks values and converts them into [`FilterSettings`].
//! That second step does not depend on YAML text, so a Kubernetes source can reuse it; the
//! file source ([`parse_file`]) adds the file, line and column to its errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_runtime::policy::limits as filter_limits;
use weft_yaml::{ConfigError, error_at, parse_size, parse_yaml};

/// The API group and version of a definition, as written in `apiVersion`.
pub const API_VERSION: &str = "weft.dev/v1alpha1";
/// The kind of a definition, as written in `kind`.
pub const KIND: &str = "WasmFilter";
/// The namespace of a definition that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One definition file: a whole `WasmFilter` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WasmFilter {
    /// `weft.dev/v1alpha1` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `WasmFilter` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and namespace.
    pub metadata: Metadata,
    /// What the filter is and where it applies.
    pub spec: WasmFilterSpec,
}

/// The object's identity. Only the fields a file needs; Kubernetes brings its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Lowercase letters, digits, `-` and `.`; unique within the namespace.
    pub name: String,
    /// The namespace; `default` when absent.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

/// The filter itself, as written: the spec of the Kubernetes custom resource
/// [`WasmFilterResource`] (see [`crate::crd`]) and of a definition file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomResource, JsonSchema)]
#[schemars(description = "Which module to run, with which config, on which proxies.")]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WasmFilter",
    root = "WasmFilterResource",
    doc = "A WebAssembly filter that weft proxies run on the requests of the workloads it selects.",
    namespaced,
    status = "crate::crd::WasmFilterStatus",
    shortname = "wf",
    category = "weft",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Selected","type":"integer","description":"Connected proxies the filter selects","jsonPath":".status.rollout.selected"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","description":"Selected proxies that run the generation in service","jsonPath":".status.rollout.updated"}"#,
    printcolumn = r#"{"name":"Rejected","type":"integer","description":"Selected proxies that refused it","jsonPath":".status.rollout.rejected"}"#,
    printcolumn = r#"{"name":"Serving","type":"integer","priority":1,"description":"The generation in service","jsonPath":".status.servingGeneration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // Every rule names the field it is about (`fieldPath`, relative to the object) and why
    // (`reason`), so `kubectl apply` says `spec.pullSecret: Forbidden: ...` rather than
    // `<nil>: Invalid value: "object": ...`; the messages therefore do not repeat the field.
    validation = Rule::new("[has(self.spec.module.file), has(self.spec.module.url), has(self.spec.module.oci), has(self.spec.module.configMap)].filter(x, x).size() == 1").message("give exactly one module source: url, oci or configMap").field_path(".spec.module"),
    validation = Rule::new("!has(self.spec.module.file)").message("file is for definition files of the directory source; in a cluster give url, oci or configMap").field_path(".spec.module.file").reason(Reason::FieldValueForbidden),
    validation = Rule::new("has(self.spec.sha256) || has(self.spec.module.oci)").message("url and configMap modules need their sha256 digest (an OCI layer is named by its own)").field_path(".spec.sha256").reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.spec.pullSecret) || has(self.spec.module.oci)").message("only oci modules are pulled with a pull secret").field_path(".spec.pullSecret").reason(Reason::FieldValueForbidden),
)]
pub struct WasmFilterSpec {
    /// Where the module's bytes come from.
    pub module: ModuleSource,
    /// The module's expected sha256 digest (64 lowercase hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// When to fetch the module again: `IfNotPresent` (the default) fetches a source and
    /// digest once; `Always` fetches on every change of the definition and every resync, so a
    /// moving OCI tag is followed.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// The name of a `kubernetes.io/dockerconfigjson` Secret in the filter's namespace holding
    /// credentials for the OCI registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
    /// The filter's own configuration, handed to it as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::free_form_object")]
    pub config: Option<serde_json::Value>,
    /// Which proxies of the namespace run the filter.
    #[serde(default)]
    pub selector: Selector,
    /// Where in the chain the filter runs.
    #[serde(default)]
    pub phase: Phase,
    /// Within a phase, higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Which requests the filter sees.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<MatchSpec>,
    /// What happens to a request when the filter fails.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Per-hook-call time budget, like `50ms`; the proxy's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(us|ms|s)$"))]
    pub time_budget: Option<String>,
    /// Linear memory limit per instance, like `32MiB`; the proxy's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+ ?(B|KiB|MiB|GiB)?$"))]
    pub max_memory: Option<String>,
}

/// When the control plane fetches a module again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Fetch each source and digest once, then reuse the bytes.
    #[default]
    IfNotPresent,
    /// Fetch on every change of the definition and on every resync.
    Always,
}

/// Where a module's bytes come from: exactly one of the fields. Every source kind of the CRD
/// is listed so that a definition meant for another source is named as such rather than
/// rejected as a typo. (A struct of optional fields rather than an enum: that is how a
/// Kubernetes structural schema expresses a one-of, and how YAML users write it.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModuleSource {
    /// A file, relative to the definition file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// An `https://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://[^\s]+$"))]
    pub url: Option<String>,
    /// An OCI artifact reference, like `registry.example.com/filters/authz:1.2` or with an
    /// `oci://` prefix; the artifact's layer of media type `application/wasm` is the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// A key of a Kubernetes ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKey>,
}

impl ModuleSource {
    /// A module read from `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            file: Some(path.into()),
            ..Self::default()
        }
    }

    /// The YAML keys of the kinds that are set, for messages.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.file.is_some() {
            kinds.push("file");
        }
        if self.url.is_some() {
            kinds.push("url");
        }
        if self.oci.is_some() {
            kinds.push("oci");
        }
        if self.config_map.is_some() {
            kinds.push("configMap");
        }
        kinds
    }
}

/// A key of a ConfigMap in the filter's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMapKey {
    /// The ConfigMap's name.
    pub name: String,
    /// The key holding the module.
    pub key: String,
}

/// Which proxies of the namespace a filter selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// Every pair must be among the proxy's labels; empty selects every proxy.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Where in the chain a filter runs. Chains run the phases in this order.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Phase {
    /// Authentication: who is calling.
    Authn,
    /// Authorization: may they.
    Authz,
    /// Statistics: after the decisions.
    Stats,
    /// No particular phase: after all others.
    #[default]
    Unspecified,
}

/// What happens to a request when its filter fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    /// Reject the request. The default.
    #[default]
    FailClosed,
    /// Skip the filter and go on.
    FailOpen,
}

/// Listener direction, as in the proxy's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Direction {
    /// Clients calling the application.
    Inbound,
    /// The application calling other services.
    Outbound,
}

/// Which requests a filter sees; unset or empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchSpec {
    /// Listener direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Route names.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Request path prefixes; each starts with `/`.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// Request methods, uppercase.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// A definition's values, checked and converted to what a snapshot carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterSettings {
    /// Labels every selected proxy carries.
    pub match_labels: BTreeMap<String, String>,
    /// Where in the chain the filter runs; phases run in [`Phase`] order.
    pub phase: Phase,
    /// Order within the phase; higher first.
    pub priority: i32,
    /// Which requests the filter sees.
    pub match_spec: MatchSpec,
    /// What happens when the filter fails.
    pub failure_policy: FailurePolicy,
    /// Milliseconds; 0 for the proxy's default.
    pub time_budget_ms: u32,
    /// Bytes; 0 for the proxy's default.
    pub max_memory_bytes: u64,
    /// The config as JSON; empty for none.
    pub config_json: String,
}

/// A problem with one field of a definition, before it is located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Mapping keys from the object's root, like `["spec", "timeBudget"]`.
    pub path: Vec<&'static str>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl FieldError {
    fn new(path: &[&'static str], message: impl Into<String>) -> Self {
        Self {
            path: path.to_vec(),
            message: message.into(),
        }
    }

    /// This error located in the YAML text `src` read from `origin`.
    pub fn locate(&self, src: &str, origin: &Path) -> ConfigError {
        error_at(src, origin, &self.path, self.message.clone())
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

impl WasmFilter {
    /// Checks the parts outside the spec: `apiVersion`, `kind` and the metadata.
    pub fn check_header(&self) -> Result<(), FieldError> {
        if let Some(version) = &self.api_version
            && version != API_VERSION
        {
            return Err(FieldError::new(
                &["apiVersion"],
                format!("unsupported apiVersion {version:?}; expected {API_VERSION:?}"),
            ));
        }
        if let Some(kind) = &self.kind
            && kind != KIND
        {
            return Err(FieldError::new(
                &["kind"],
                format!("unsupported kind {kind:?}; expected {KIND:?}"),
            ));
        }
        check_object_name(&self.metadata.name)
            .map_err(|m| FieldError::new(&["metadata", "name"], m))?;
        check_object_name(&self.metadata.namespace)
            .map_err(|m| FieldError::new(&["metadata", "namespace"], m))?;
        Ok(())
    }
}

impl WasmFilterSpec {
    /// Checks every value and converts it into what a snapshot carries. The module itself
    /// (its source kind, bytes and digest) is the source's business.
    pub fn resolve(&self) -> Result<FilterSettings, FieldError> {
        if let Some(sha) = &self.sha256 {
            check_sha256(sha).map_err(|m| FieldError::new(&["spec", "sha256"], m))?;
        }
        for (key, value) in &self.selector.match_labels {
            if key.is_empty() {
                return Err(FieldError::new(
                    &["spec", "selector", "matchLabels"],
                    format!("empty label name (value {value:?})"),
                ));
            }
        }
        let match_spec = self.match_.clone().unwrap_or_default();
        check_match(&match_spec)?;
        let time_budget_ms = match &self.time_budget {
            None => 0,
            Some(text) => {
                parse_time_budget(text).map_err(|m| FieldError::new(&["spec", "timeBudget"], m))?
            }
        };
        let max_memory_bytes = match &self.max_memory {
            None => 0,
            Some(text) => {
                parse_max_memory(text).map_err(|m| FieldError::new(&["spec", "maxMemory"], m))?
            }
        };
        let config_json = match &self.config {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(value) => serde_json::to_string(value).map_err(|e| {
                FieldError::new(
                    &["spec", "config"],
                    format!("cannot be written as JSON: {e}"),
                )
            })?,
        };
        Ok(FilterSettings {
            match_labels: self.selector.match_labels.clone(),
            phase: self.phase,
            priority: self.priority,
            match_spec,
            failure_policy: self.failure_policy,
            time_budget_ms,
            max_memory_bytes,
            config_json,
        })
    }

    /// The module file, relative to the definition's directory; an error for every other
    /// module source, which a directory cannot serve.
    pub fn module_file(&self) -> Result<&Path, FieldError> {
        let kinds = self.module.kinds();
        match (kinds.as_slice(), &self.module.file) {
            ([], _) => Err(FieldError::new(
                &["spec", "module"],
                "no module source; give `file: <path relative to this definition>`",
            )),
            ([_, _, ..], _) => Err(FieldError::new(
                &["spec", "module"],
                format!("give exactly one module source; found {}", kinds.join(", ")),
            )),
            (_, Some(path)) if path.as_os_str().is_empty() => Err(FieldError::new(
                &["spec", "module", "file"],
                "empty path; give the module file relative to this definition's directory",
            )),
            (_, Some(path)) => Ok(path),
            ([kind], None) => Err(FieldError::new(
                &["spec", "module", *kind],
                format!(
                    "module source `{kind}` is not supported by the directory source, which only \
                     supports `file` (a path relative to the definition file)"
                ),
            )),
        }
    }
}

/// A definition read from a file and checked: everything but the module's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDefinition {
    /// The object as written.
    pub object: WasmFilter,
    /// The spec's values, checked and converted by [`WasmFilterSpec::resolve`].
    pub settings: FilterSettings,
    /// The module file, resolved against the definition file's directory.
    pub module_path: PathBuf,
}

/// Reads one definition from the YAML text `src` of the file `origin`. Errors name the file,
/// line, column and field, like
/// `defs/rl.yaml:7:14: spec.phase: unknown variant ...`.
pub fn parse_file(src: &str, origin: &Path) -> Result<ParsedDefinition, ConfigError> {
    let object: WasmFilter = parse_yaml(src, origin)?;
    let locate = |e: FieldError| e.locate(src, origin);
    object.check_header().map_err(locate)?;
    let settings = object.spec.resolve().map_err(locate)?;
    let file = object.spec.module_file().map_err(locate)?;
    let module_path = origin.parent().unwrap_or(Path::new("")).join(file);
    Ok(ParsedDefinition {
        object,
        settings,
        module_path,
    })
}

/// A Kubernetes-style object name: 1 to 253 of lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit.
fn check_object_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("{} characters; at most 253 allowed", name.len()));
    }
    if let Some(bad) = name.chars().find(|&c| !(alnum(c) || c == '-' || c == '.')) {
        return Err(format!(
            "{name:?} contains {bad:?}; only lowercase letters, digits, '-' and '.' are allowed"
        ));
    }
    if !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Err(format!(
            "{name:?} must start and end with a lowercase letter or digit"
        ));
    }
    Ok(())
}

/// Whether `text` is a sha256 digest as modules are named: 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_sha256(text: &str) -> Result<(), String> {
    if is_sha256(text) {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a sha256 digest; expected 64 lowercase hex digits (as printed by \
             `sha256sum`)"
        ))
    }
}

fn check_match(spec: &MatchSpec) -> Result<(), FieldError> {
    const ROUTES: &[&str] = &["spec", "match", "routes"];
    const PREFIXES: &[&str] = &["spec", "match", "pathPrefixes"];
    const METHODS: &[&str] = &["spec", "match", "methods"];
    if let Some(i) = spec.routes.iter().position(String::is_empty) {
        return Err(FieldError::new(
            ROUTES,
            format!("item {i} is empty; give a route name"),
        ));
    }
    if let Some(prefix) = spec.path_prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(FieldError::new(
            PREFIXES,
            format!("{prefix:?} does not start with '/'"),
        ));
    }
    for method in &spec.methods {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if method.is_empty() || !method.chars().all(token) {
            return Err(FieldError::new(
                METHODS,
                format!("{method:?} is not an HTTP method"),
            ));
        }
        if method.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(FieldError::new(
                METHODS,
                format!(
                    "{method:?} must be uppercase ({:?}); methods are case-sensitive",
                    method.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(())
}

fn parse_time_budget(text: &str) -> Result<u32, String> {
    let budget = weft_yaml::parse_duration(text)?;
    if budget.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    if budget > filter_limits::MAX_TIME_BUDGET {
        return Err(format!("{text} is more than the maximum of 10s"));
    }
    if budget < Duration::from_millis(1) {
        return Err(format!(
            "{text} is less than 1ms, the smallest budget a proxy accepts"
        ));
    }
    // At most 10 000 ms, so the conversion cannot fail.
    Ok(u32::try_from(budget.as_millis()).unwrap_or(u32::MAX))
}

fn parse_max_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|e| format!("{text:?}: {e}"))?;
    if !filter_limits::MAX_MEMORY_RANGE.contains(&bytes) {
        return Err(format!(
            "{text} is outside the allowed range of 1MiB to 4GiB"
        ));
    }
    Ok(bytes)
}
