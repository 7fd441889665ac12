//! Fixtures for the unit tests of the status and restart logic: a `WasmFilter`, its entry,
//! and proxies in given states.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::state::{Accepted, Entry, Problem};
use crate::catalog::{CatalogFilter, ProxyIdentity};
use crate::crd::{WasmFilterResource, WasmFilterStatus};
use crate::definition::{
    FailurePolicy, FilterSettings, MatchSpec, ModuleSource, Phase, PullPolicy, WasmFilterSpec,
};
use crate::status::{ProxyStatus, ReportError, ReportStatus, SentFilter};

pub(super) const SHA_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub(super) const SHA_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

pub(super) fn object(generation: i64) -> WasmFilterResource {
    let mut object = WasmFilterResource::new(
        "greeter",
        WasmFilterSpec {
            module: ModuleSource {
                oci: Some("registry.example/greeter:1".to_owned()),
                ..ModuleSource::default()
            },
            sha256: None,
            pull_policy: PullPolicy::IfNotPresent,
            pull_secret: None,
            config: None,
            selector: Default::default(),
            phase: Phase::Unspecified,
            priority: 0,
            match_: None,
            failure_policy: FailurePolicy::FailClosed,
            time_budget: None,
            max_memory: None,
        },
    );
    object.metadata.namespace = Some("shop".to_owned());
    object.metadata.generation = Some(generation);
    object
}

pub(super) fn accepted(generation: i64, sha: &str) -> Accepted {
    Accepted {
        filter: CatalogFilter {
            namespace: "shop".to_owned(),
            name: "greeter".to_owned(),
            generation,
            settings: FilterSettings {
                match_labels: BTreeMap::new(),
                phase: Phase::Unspecified,
                priority: 0,
                match_spec: MatchSpec::default(),
                failure_policy: FailurePolicy::FailClosed,
                time_budget_ms: 0,
                max_memory_bytes: 0,
                config_json: String::new(),
            },
            module_sha256: sha.to_owned(),
        },
        module: Bytes::new(),
    }
}

pub(super) fn entry(
    generation: i64,
    accepted: Option<Accepted>,
    problem: Option<Problem>,
) -> Entry {
    Entry {
        object: Arc::new(object(generation)),
        accepted,
        problem,
        resolving: None,
        retry_at: None,
        backoff: Duration::from_secs(1),
        restored: None,
    }
}

/// A connected proxy in `namespace` that was sent `greeter` at `generation`/`sha` in
/// snapshot 7 and answered `report` (ACK when `None` errors).
pub(super) fn proxy(
    name: &str,
    namespace: &str,
    sent: Option<(i64, &str)>,
    answer: Option<Result<(), &str>>,
) -> ProxyStatus {
    ProxyStatus {
        identity: ProxyIdentity {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            labels: BTreeMap::new(),
        },
        spiffe_id: None,
        connected: true,
        connected_at: SystemTime::UNIX_EPOCH,
        disconnected_at: None,
        sent_version: 7,
        serving_version: if matches!(answer, Some(Ok(()))) { 7 } else { 6 },
        discovery: None,
        last_report: answer.map(|a| ReportStatus {
            version: 7,
            accepted: a.is_ok(),
            errors: match a {
                Ok(()) => Vec::new(),
                Err(message) => vec![ReportError {
                    filter: "shop/greeter".to_owned(),
                    message: message.to_owned(),
                }],
            },
        }),
        filters: sent
            .map(|(generation, sha)| SentFilter {
                name: "shop/greeter".to_owned(),
                sha256: sha.to_owned(),
                generation,
            })
            .into_iter()
            .collect(),
    }
}

pub(super) fn ready(status: &WasmFilterStatus) -> (&str, &str, &str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

pub(super) fn degraded(status: &WasmFilterStatus) -> (&str, &str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    (c.status.as_str(), c.reason.as_str())
}
