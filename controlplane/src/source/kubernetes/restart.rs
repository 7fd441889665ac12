//! After a restart: the generation an earlier run recorded in service on an object, and when
//! its recorded status stays rather than one that only says proxies have not reported yet.

use super::state::Entry;
use crate::crd::{Rollout, WasmFilterStatus};

/// The generation in service according to a status an earlier run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Restored {
    /// `observedGeneration`: the generation that status describes.
    pub(super) observed_generation: Option<i64>,
    /// `servingGeneration`: what proxies run until this run publishes.
    pub(super) generation: i64,
    /// `servingSha256`: the module proxies run; another digest is a new rollout.
    pub(super) sha256: String,
    /// `rollout`: reported as recorded until this run has figures of its own.
    pub(super) rollout: Option<Rollout>,
}

impl Restored {
    pub(super) fn from_status(status: Option<&WasmFilterStatus>) -> Option<Self> {
        let status = status?;
        Some(Self {
            observed_generation: status.observed_generation,
            generation: status.serving_generation?,
            sha256: status.serving_sha256.clone()?,
            rollout: status.rollout.clone(),
        })
    }
}

/// Whether the status an earlier run recorded on the object should stay rather than `status`,
/// because this run knows nothing new about the generation it has in service:
///
/// - that generation is the one being resolved again (the spec did not change meanwhile):
///   this run has not even accepted it yet, but proxies run it;
/// - or, while proxies may still be `resubscribing`, this run accepted that very generation
///   and digest, and `status` says only that the selected proxies have not all reported
///   (`RollingOut`) or not come back (`NoSelectedProxies`). Reports that every selected proxy
///   runs it, or that one refused it, are written at once.
///
/// A new generation, a refusal or a changed digest is news, and written.
pub(super) fn keeps_recorded_status(
    entry: &Entry,
    status: &WasmFilterStatus,
    resubscribing: bool,
) -> bool {
    let Some(restored) = &entry.restored else {
        return false;
    };
    let generation = entry.object.metadata.generation.unwrap_or(0);
    if entry
        .problem
        .as_ref()
        .is_some_and(|p| p.generation == generation)
    {
        return false;
    }
    match &entry.accepted {
        None => {
            entry.resolving == Some(generation) && restored.observed_generation == Some(generation)
        }
        Some(accepted) => {
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.reason.as_str());
            resubscribing
                && entry.resolving.is_none()
                && accepted.filter.generation == restored.generation
                && accepted.filter.module_sha256 == restored.sha256
                && matches!(ready, Some("RollingOut" | "NoSelectedProxies"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::super::state::Problem;
    use super::super::status::compute_status;
    use super::super::test_support::*;
    use super::*;

    /// An entry as a restarted control plane has it: generation 1 with `SHA_1` rolled out to
    /// one proxy, recorded by the earlier run; the object now at `generation`.
    fn restored_entry(generation: i64) -> Entry {
        let recorded = WasmFilterStatus {
            observed_generation: Some(1),
            conditions: Vec::new(),
            serving_generation: Some(1),
            serving_sha256: Some(SHA_1.to_owned()),
            rollout: Some(Rollout {
                selected: 1,
                updated: 1,
                rejected: 0,
                failures: Vec::new(),
            }),
        };
        let mut e = entry(generation, None, None);
        Arc::make_mut(&mut e.object).status = Some(recorded.clone());
        e.restored = Restored::from_status(Some(&recorded));
        e.resolving = Some(generation);
        e
    }

    #[test]
    fn a_restart_keeps_the_recorded_status_until_proxies_report() {
        let now = SystemTime::now();
        let mut e = restored_entry(1);
        assert_eq!(
            e.restored
                .as_ref()
                .map(|r| (r.generation, r.sha256.as_str())),
            Some((1, SHA_1))
        );
        // Resolving again the generation the status describes: nothing new to say, even
        // once proxies had time to come back.
        let status = compute_status(&e, &[], "weft-system", now);
        assert_eq!(status.serving_generation, Some(1));
        assert!(keeps_recorded_status(&e, &status, true));
        assert!(keeps_recorded_status(&e, &status, false));

        // Accepted again, the same digest: no proxy back yet, or not answered yet.
        e.resolving = None;
        e.accepted = Some(accepted(1, SHA_1));
        let status = compute_status(&e, &[], "weft-system", now);
        assert_eq!(ready(&status).1, "NoSelectedProxies");
        assert!(keeps_recorded_status(&e, &status, true));
        let waiting = [proxy("a", "shop", Some((1, SHA_1)), None)];
        let status = compute_status(&e, &waiting, "weft-system", now);
        assert_eq!(ready(&status), ("False", "RollingOut", ready(&status).2));
        assert!(keeps_recorded_status(&e, &status, true));
        // After the grace period that is what it is.
        assert!(!keeps_recorded_status(&e, &status, false));

        // Reports are news: all run it, or one refused it.
        let acked = [proxy("a", "shop", Some((1, SHA_1)), Some(Ok(())))];
        let status = compute_status(&e, &acked, "weft-system", now);
        assert_eq!(ready(&status).1, "RolledOut");
        assert!(!keeps_recorded_status(&e, &status, true));
        let nacked = [proxy("a", "shop", Some((1, SHA_1)), Some(Err("no memory")))];
        let status = compute_status(&e, &nacked, "weft-system", now);
        assert_eq!(ready(&status).1, "ProxiesRejected");
        assert!(!keeps_recorded_status(&e, &status, true));

        // A different digest (a moved tag under `pullPolicy: Always`) is a new rollout.
        e.accepted = Some(accepted(1, SHA_2));
        let status = compute_status(&e, &waiting, "weft-system", now);
        assert!(!keeps_recorded_status(&e, &status, true));

        // A refusal of the recorded generation is news too.
        let mut refused = restored_entry(1);
        refused.resolving = None;
        refused.problem = Some(Problem {
            generation: 1,
            reason: "FetchFailed",
            message: "registry unreachable".to_owned(),
        });
        let status = compute_status(&refused, &[], "weft-system", now);
        assert!(!keeps_recorded_status(&refused, &status, true));

        // Objects no earlier run wrote a status for are reported as they are.
        let fresh = entry(1, Some(accepted(1, SHA_1)), None);
        let status = compute_status(&fresh, &waiting, "weft-system", now);
        assert!(!keeps_recorded_status(&fresh, &status, true));
    }

    #[test]
    fn a_spec_changed_during_a_restart_keeps_the_recorded_generation_in_service() {
        let e = restored_entry(2);
        let status = compute_status(&e, &[], "weft-system", SystemTime::now());
        let (state, reason, message) = ready(&status);
        assert_eq!((state, reason), ("False", "Resolving"));
        assert!(
            message.contains("generation 1 (sha256 111111111111) stays in service"),
            "{message}"
        );
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.serving_generation, Some(1));
        assert_eq!(status.serving_sha256.as_deref(), Some(SHA_1));
        assert_eq!(status.rollout.map(|r| r.updated), Some(1));
        // A new generation is news: written at once.
        assert!(!keeps_recorded_status(
            &e,
            &compute_status(&e, &[], "weft-system", SystemTime::now()),
            true
        ));
    }
}
