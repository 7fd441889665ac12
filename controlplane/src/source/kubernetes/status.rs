//! The status of an object: the `Ready` and `Degraded` conditions, the generation in service,
//! and its rollout figures over the connected proxies.

use std::time::SystemTime;

use super::state::Entry;
use crate::catalog::CatalogFilter;
use crate::crd::{Condition, ProxyFailure, Rollout, WasmFilterStatus};
use crate::status::ProxyStatus;

/// Whether two statuses say the same thing (transition times aside).
pub(super) fn same_status(a: &WasmFilterStatus, b: &WasmFilterStatus) -> bool {
    let strip = |s: &WasmFilterStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time.clear();
        }
        s
    };
    strip(a) == strip(b)
}

/// The most proxy failures a status lists.
const MAX_LISTED_FAILURES: usize = 10;

/// The status of one object: what was refused and why, what is in service, and how far it
/// rolled out over the connected `proxies`.
///
/// - `Ready` is `True` when the newest generation is in service on every selected proxy
///   (`RolledOut`) or no connected proxy selects it (`NoSelectedProxies`); `False` while it
///   is resolved (`Resolving`) or rolls out (`RollingOut`), when proxies refused it
///   (`ProxiesRejected`), or when the control plane refused it (`FetchFailed`,
///   `DigestMismatch`, `InvalidSource`, `InvalidSpec`, `ModuleInvalid`, `ConfigRejected`).
/// - `Degraded` is `True` when something needs a human: the control plane or a proxy refused
///   the newest generation. Its message says which generation stays in service.
/// - `servingGeneration` is the generation this run accepted; before it accepts one, the one
///   an earlier run recorded (with its rollout figures), which proxies still run.
///
/// Whether to write it or keep the recorded status is [`keeps_recorded_status`](super::restart::keeps_recorded_status)'s call.
pub(super) fn compute_status(
    entry: &Entry,
    proxies: &[ProxyStatus],
    root_namespace: &str,
    now: SystemTime,
) -> WasmFilterStatus {
    let generation = entry.object.metadata.generation.unwrap_or(0);
    let previous = entry.object.status.as_ref();
    // What is in service: what this run accepted, or else what an earlier run recorded, which
    // proxies run until this run publishes.
    let (serving, rollout) = match (&entry.accepted, &entry.restored) {
        (Some(accepted), _) => (
            Some((
                accepted.filter.generation,
                accepted.filter.module_sha256.as_str(),
            )),
            Some(rollout(&accepted.filter, proxies, root_namespace)),
        ),
        (None, Some(restored)) => (
            Some((restored.generation, restored.sha256.as_str())),
            restored.rollout.clone(),
        ),
        (None, None) => (None, None),
    };
    let in_service = match serving {
        Some((generation, sha256)) => format!(
            "generation {generation} (sha256 {}) stays in service",
            short(sha256)
        ),
        None => "no generation of this filter is in service".to_owned(),
    };
    let problem = entry
        .problem
        .as_ref()
        .filter(|p| p.generation == generation);
    // Only a generation this run accepted has rollout figures of its own.
    let current = entry
        .accepted
        .as_ref()
        .is_some_and(|a| a.filter.generation == generation);

    let (ready, ready_reason, ready_message) = if let Some(p) = problem {
        (
            false,
            p.reason,
            format!(
                "generation {generation} was refused: {}; {in_service}",
                p.message
            ),
        )
    } else if !current {
        (
            false,
            "Resolving",
            format!("fetching and checking generation {generation}; {in_service}"),
        )
    } else {
        let r = rollout.as_ref().cloned().unwrap_or_default();
        let f = serving.map(|(_, sha256)| short(sha256)).unwrap_or_default();
        if r.rejected > 0 {
            let first = r
                .failures
                .first()
                .map(|f| format!(": {} says {}", f.proxy, f.message))
                .unwrap_or_default();
            (
                false,
                "ProxiesRejected",
                format!(
                    "{} of {} selected proxies refused generation {generation}{first}",
                    r.rejected, r.selected
                ),
            )
        } else if r.selected == 0 {
            (
                true,
                "NoSelectedProxies",
                format!(
                    "generation {generation} (sha256 {f}) is accepted; no connected proxy selects \
                     it"
                ),
            )
        } else if r.updated < r.selected {
            (
                false,
                "RollingOut",
                format!(
                    "{} of {} selected proxies run generation {generation} (sha256 {f})",
                    r.updated, r.selected
                ),
            )
        } else {
            (
                true,
                "RolledOut",
                format!(
                    "all {} selected proxies run generation {generation} (sha256 {f})",
                    r.selected
                ),
            )
        }
    };
    let (degraded, degraded_reason, degraded_message) = match problem {
        Some(p) => (
            true,
            p.reason,
            format!("generation {generation}: {}; {in_service}", p.message),
        ),
        None if ready_reason == "ProxiesRejected" => {
            (true, "ProxiesRejected", ready_message.clone())
        }
        None => (false, "AsExpected", "nothing needs attention".to_owned()),
    };
    let conditions = vec![
        condition(
            "Ready",
            ready,
            ready_reason,
            ready_message,
            generation,
            previous,
            now,
        ),
        condition(
            "Degraded",
            degraded,
            degraded_reason,
            degraded_message,
            generation,
            previous,
            now,
        ),
    ];
    WasmFilterStatus {
        observed_generation: Some(generation),
        conditions,
        serving_generation: serving.map(|(generation, _)| generation),
        serving_sha256: serving.map(|(_, sha256)| sha256.to_owned()),
        rollout,
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: i64,
    previous: Option<&WasmFilterStatus>,
    now: SystemTime,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| humantime::format_rfc3339_seconds(now).to_string());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// Rollout figures of `filter` over the connected proxies it selects.
fn rollout(filter: &CatalogFilter, proxies: &[ProxyStatus], root_namespace: &str) -> Rollout {
    let name = filter.qualified_name();
    let mut rollout = Rollout::default();
    for proxy in proxies
        .iter()
        .filter(|p| p.connected && filter.selects(&p.identity, root_namespace))
    {
        rollout.selected += 1;
        let sent = proxy.filters.iter().any(|f| {
            f.name == name && f.generation == filter.generation && f.sha256 == filter.module_sha256
        });
        if !sent {
            continue;
        }
        let answered = proxy
            .last_report
            .as_ref()
            .filter(|r| r.version == proxy.sent_version);
        match answered {
            Some(report) if report.accepted => rollout.updated += 1,
            Some(report) => {
                let reasons: Vec<&str> = report
                    .errors
                    .iter()
                    .filter(|e| e.filter == name || e.filter.is_empty())
                    .map(|e| e.message.as_str())
                    .collect();
                if !reasons.is_empty() {
                    rollout.rejected += 1;
                    if rollout.failures.len() < MAX_LISTED_FAILURES {
                        rollout.failures.push(ProxyFailure {
                            proxy: format!("{}/{}", proxy.identity.namespace, proxy.identity.name),
                            message: reasons.join("; "),
                        });
                    }
                }
            }
            None => {}
        }
    }
    rollout
}

/// The first 12 hex digits of a digest, as in messages.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::state::Problem;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn rolled_out_when_every_selected_connected_proxy_acked_this_generation() {
        let proxies = [
            proxy("a", "shop", Some((2, SHA_1)), Some(Ok(()))),
            proxy("b", "shop", Some((2, SHA_1)), Some(Ok(()))),
            // Another namespace: not selected.
            proxy("c", "billing", None, Some(Ok(()))),
        ];
        let status = compute_status(
            &entry(2, Some(accepted(2, SHA_1)), None),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        assert_eq!(ready(&status).0, "True");
        assert_eq!(ready(&status).1, "RolledOut");
        assert_eq!(degraded(&status), ("False", "AsExpected"));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.serving_generation, Some(2));
        assert_eq!(status.serving_sha256.as_deref(), Some(SHA_1));
        let rollout = status.rollout.expect("rollout");
        assert_eq!(
            (rollout.selected, rollout.updated, rollout.rejected),
            (2, 2, 0)
        );
    }

    #[test]
    fn rolling_out_counts_proxies_still_on_the_old_generation_or_unanswered() {
        let proxies = [
            proxy("a", "shop", Some((2, SHA_1)), Some(Ok(()))),
            proxy("b", "shop", Some((1, SHA_2)), Some(Ok(()))),
            proxy("c", "shop", Some((2, SHA_1)), None),
        ];
        let status = compute_status(
            &entry(2, Some(accepted(2, SHA_1)), None),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "RollingOut"));
        assert!(message.starts_with("1 of 3 selected proxies"), "{message}");
        let rollout = status.rollout.expect("rollout");
        assert_eq!(
            (rollout.selected, rollout.updated, rollout.rejected),
            (3, 1, 0)
        );
    }

    #[test]
    fn a_proxy_nack_degrades_and_names_the_proxy_and_its_reason() {
        let mut disconnected = proxy("d", "shop", Some((2, SHA_1)), Some(Err("old news")));
        disconnected.connected = false;
        let proxies = [
            proxy("a", "shop", Some((2, SHA_1)), Some(Ok(()))),
            proxy("b", "shop", Some((2, SHA_1)), Some(Err("out of memory"))),
            disconnected,
        ];
        let status = compute_status(
            &entry(2, Some(accepted(2, SHA_1)), None),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "ProxiesRejected"));
        assert!(message.contains("shop/b says out of memory"), "{message}");
        assert_eq!(degraded(&status), ("True", "ProxiesRejected"));
        let rollout = status.rollout.expect("rollout");
        assert_eq!(
            (rollout.selected, rollout.updated, rollout.rejected),
            (2, 1, 1)
        );
        assert_eq!(
            rollout.failures,
            [ProxyFailure {
                proxy: "shop/b".to_owned(),
                message: "out of memory".to_owned()
            }]
        );
    }

    #[test]
    fn a_refused_generation_keeps_the_previous_one_in_service_and_says_so() {
        let proxies = [proxy("a", "shop", Some((2, SHA_1)), Some(Ok(())))];
        let problem = Problem {
            generation: 3,
            reason: "ConfigRejected",
            message: "greeting must not be empty".to_owned(),
        };
        let status = compute_status(
            &entry(3, Some(accepted(2, SHA_1)), Some(problem)),
            &proxies,
            "weft-system",
            SystemTime::now(),
        );
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "ConfigRejected"));
        assert!(message.contains("greeting must not be empty"), "{message}");
        assert!(
            message.contains("generation 2 (sha256 111111111111) stays in service"),
            "{message}"
        );
        assert_eq!(degraded(&status), ("True", "ConfigRejected"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.serving_generation, Some(2));
        // The rollout figures are those of generation 2, which runs everywhere.
        assert_eq!(status.rollout.expect("rollout").updated, 1);
    }

    #[test]
    fn nothing_in_service_and_no_proxies_are_said_plainly() {
        let problem = Problem {
            generation: 1,
            reason: "FetchFailed",
            message: "registry unreachable".to_owned(),
        };
        let status = compute_status(
            &entry(1, None, Some(problem)),
            &[],
            "weft-system",
            SystemTime::now(),
        );
        assert!(
            ready(&status)
                .2
                .contains("no generation of this filter is in service"),
            "{status:?}"
        );
        assert_eq!(status.serving_generation, None);
        assert_eq!(status.rollout, None);

        let status = compute_status(
            &entry(1, Some(accepted(1, SHA_1)), None),
            &[],
            "weft-system",
            SystemTime::now(),
        );
        assert_eq!(ready(&status).0, "True");
        assert_eq!(ready(&status).1, "NoSelectedProxies");

        let mut resolving = entry(2, Some(accepted(1, SHA_1)), None);
        resolving.resolving = Some(2);
        let status = compute_status(&resolving, &[], "weft-system", SystemTime::now());
        assert_eq!(ready(&status).1, "Resolving");
    }

    #[test]
    fn transition_times_change_only_when_the_condition_status_does() {
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let later = early + Duration::from_secs(60);
        let mut e = entry(1, Some(accepted(1, SHA_1)), None);
        let first = compute_status(&e, &[], "weft-system", early);
        Arc::make_mut(&mut e.object).status = Some(first.clone());
        // Same condition statuses: the times stay.
        let same = compute_status(&e, &[], "weft-system", later);
        assert_eq!(first.conditions, same.conditions);
        assert!(same_status(&first, &same));
        // Ready turns False: its time moves, Degraded's does not.
        let proxies = [proxy("a", "shop", Some((1, SHA_1)), None)];
        let moved = compute_status(&e, &proxies, "weft-system", later);
        let time = |s: &WasmFilterStatus, t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.last_transition_time.clone())
        };
        assert_ne!(time(&moved, "Ready"), time(&first, "Ready"));
        assert_eq!(time(&moved, "Degraded"), time(&first, "Degraded"));
        assert!(!same_status(&first, &moved));
    }
}
