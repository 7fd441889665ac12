//! The catalog: every resolved filter definition and the bytes of their modules, as one value
//! that a source publishes whole. Also the rule for which filters select a proxy, and in which
//! order they run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Serialize;

use crate::definition::{Direction, FailurePolicy, FilterSettings};
use weft_api::v1;

/// Everything a source knows, published to the [`ControlPlane`](crate::ControlPlane) at once.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The filters, in any order; `namespace/name` should be unique.
    pub filters: Vec<CatalogFilter>,
    /// Module bytes by their sha256 digest (lowercase hex). Cloning [`Bytes`] shares them.
    pub modules: HashMap<String, Bytes>,
}

/// One resolved filter definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFilter {
    /// The definition's namespace: the filter selects proxies of this namespace only, unless
    /// it is the root namespace.
    pub namespace: String,
    /// The definition's name, unique within its namespace.
    pub name: String,
    /// Increases when the definition or its module changes; starts at 1.
    pub generation: i64,
    /// The checked values of the definition.
    pub settings: FilterSettings,
    /// The sha256 digest of the module, lowercase hex; a key of [`Catalog::modules`].
    pub module_sha256: String,
}

/// A problem a source found with one of its inputs; the filter it defined (if any was good
/// before) keeps its last good definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourceError {
    /// The file (or object) at fault.
    pub file: String,
    /// What is wrong, usually starting with `file:line:column: field:`.
    pub message: String,
}

/// Who a proxy says it is, as far as selection is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyIdentity {
    /// The proxy's name, unique within its namespace.
    pub name: String,
    /// Filters of this namespace and of the root namespace may select the proxy.
    pub namespace: String,
    /// Matched against filters' `matchLabels`.
    pub labels: BTreeMap<String, String>,
}

impl From<v1::ProxyIdentity> for ProxyIdentity {
    fn from(identity: v1::ProxyIdentity) -> Self {
        Self {
            name: identity.name,
            namespace: identity.namespace,
            labels: identity.labels.into_iter().collect(),
        }
    }
}

impl CatalogFilter {
    /// `namespace/name`: the filter's name in snapshots, logs and status.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether this filter selects `proxy`. Filters in `root_namespace` select proxies of
    /// every namespace, others only those of their own; every `matchLabels` pair must be among
    /// the proxy's labels.
    pub fn selects(&self, proxy: &ProxyIdentity, root_namespace: &str) -> bool {
        (self.namespace == root_namespace || self.namespace == proxy.namespace)
            && self
                .settings
                .match_labels
                .iter()
                .all(|(key, value)| proxy.labels.get(key) == Some(value))
    }

    /// The filter as a snapshot carries it.
    pub fn to_proto(&self) -> v1::Filter {
        let s = &self.settings;
        v1::Filter {
            name: self.qualified_name(),
            module_sha256: self.module_sha256.clone(),
            config_json: s.config_json.clone(),
            r#match: Some(v1::Match {
                direction: match s.match_spec.direction {
                    None => String::new(),
                    Some(Direction::Inbound) => "inbound".to_owned(),
                    Some(Direction::Outbound) => "outbound".to_owned(),
                },
                routes: s.match_spec.routes.clone(),
                path_prefixes: s.match_spec.path_prefixes.clone(),
                methods: s.match_spec.methods.clone(),
            }),
            failure_policy: match s.failure_policy {
                FailurePolicy::FailClosed => v1::FailurePolicy::FailClosed,
                FailurePolicy::FailOpen => v1::FailurePolicy::FailOpen,
            }
            .into(),
            time_budget_ms: s.time_budget_ms,
            max_memory_bytes: s.max_memory_bytes,
            generation: self.generation,
        }
    }
}

/// The sha256 digest of `bytes` in lowercase hex, as modules are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Chain order: phase (Authn, Authz, Stats, Unspecified), then priority (higher first), then
/// `namespace/name` so that equal priorities still give every proxy the same order.
pub fn chain_order(a: &CatalogFilter, b: &CatalogFilter) -> Ordering {
    a.settings
        .phase
        .cmp(&b.settings.phase)
        .then_with(|| b.settings.priority.cmp(&a.settings.priority))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.name.cmp(&b.name))
}

impl Catalog {
    /// The filters that select `proxy`, in chain order.
    pub fn select<'a>(
        &'a self,
        proxy: &ProxyIdentity,
        root_namespace: &str,
    ) -> Vec<&'a CatalogFilter> {
        let mut selected: Vec<_> = self
            .filters
            .iter()
            .filter(|f| f.selects(proxy, root_namespace))
            .collect();
        selected.sort_by(|a, b| chain_order(a, b));
        selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{MatchSpec, Phase};

    fn filter(namespace: &str, name: &str, phase: Phase, priority: i32) -> CatalogFilter {
        CatalogFilter {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            generation: 1,
            settings: FilterSettings {
                match_labels: BTreeMap::new(),
                phase,
                priority,
                match_spec: MatchSpec::default(),
                failure_policy: FailurePolicy::FailClosed,
                time_budget_ms: 0,
                max_memory_bytes: 0,
                config_json: String::new(),
            },
            module_sha256: "00".repeat(32),
        }
    }

    fn proxy(namespace: &str, labels: &[(&str, &str)]) -> ProxyIdentity {
        ProxyIdentity {
            name: "p".to_owned(),
            namespace: namespace.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn names(catalog: &Catalog, proxy: &ProxyIdentity) -> Vec<String> {
        catalog
            .select(proxy, "weft-system")
            .iter()
            .map(|f| f.qualified_name())
            .collect()
    }

    #[test]
    fn namespace_rule_and_root_namespace() {
        let catalog = Catalog {
            filters: vec![
                filter("default", "a", Phase::Unspecified, 0),
                filter("other", "b", Phase::Unspecified, 0),
                filter("weft-system", "c", Phase::Unspecified, 0),
            ],
            modules: HashMap::new(),
        };
        assert_eq!(
            names(&catalog, &proxy("default", &[])),
            ["default/a", "weft-system/c"]
        );
        assert_eq!(
            names(&catalog, &proxy("other", &[])),
            ["other/b", "weft-system/c"]
        );
        assert_eq!(names(&catalog, &proxy("third", &[])), ["weft-system/c"]);
    }

    #[test]
    fn match_labels_must_all_be_present() {
        let mut labelled = filter("default", "l", Phase::Unspecified, 0);
        labelled.settings.match_labels = [("app", "demo"), ("tier", "web")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let catalog = Catalog {
            filters: vec![labelled],
            modules: HashMap::new(),
        };
        assert!(names(&catalog, &proxy("default", &[("app", "demo")])).is_empty());
        assert!(
            names(
                &catalog,
                &proxy("default", &[("app", "demo"), ("tier", "db")])
            )
            .is_empty()
        );
        assert_eq!(
            names(
                &catalog,
                &proxy("default", &[("app", "demo"), ("tier", "web"), ("x", "y")])
            ),
            ["default/l"]
        );
    }

    #[test]
    fn order_is_phase_then_priority_then_name() {
        let catalog = Catalog {
            filters: vec![
                filter("default", "stats", Phase::Stats, 100),
                filter("default", "plain", Phase::Unspecified, 1000),
                filter("default", "authz-low", Phase::Authz, -1),
                filter("default", "authz-high", Phase::Authz, 5),
                filter("weft-system", "authz-b", Phase::Authz, 0),
                filter("default", "authz-b", Phase::Authz, 0),
                filter("default", "authn", Phase::Authn, 0),
            ],
            modules: HashMap::new(),
        };
        assert_eq!(
            names(&catalog, &proxy("default", &[])),
            [
                "default/authn",
                "default/authz-high",
                "default/authz-b",
                "weft-system/authz-b",
                "default/authz-low",
                "default/stats",
                "default/plain",
            ]
        );
    }
}
