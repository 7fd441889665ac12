//! The status writer: patches every object's status (server-side apply) when it changes,
//! batching bursts of proxy reports and retrying failed writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::Key;
use super::restart::keeps_recorded_status;
use super::state::State;
use super::status::{compute_status, same_status};
use crate::control_plane::{ControlPlane, lock};
use crate::crd::{FIELD_MANAGER, WasmFilterResource, WasmFilterStatus};

/// Writes every object's status when it changes.
pub(super) struct StatusWriter {
    pub(super) client: Client,
    pub(super) control_plane: ControlPlane,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) delay: Duration,
    pub(super) retry: Duration,
    /// Until when proxies may still be resubscribing after start (see
    /// [`KubernetesOptions::resubscribe_grace`](super::KubernetesOptions::resubscribe_grace)).
    pub(super) grace_until: tokio::time::Instant,
    /// The status last written per object (or found on it), to write only changes.
    pub(super) written: HashMap<Key, WasmFilterStatus>,
}

impl StatusWriter {
    pub(super) async fn run(mut self, mut kicks: watch::Receiver<u64>) {
        let mut proxies = self.control_plane.subscribe_proxy_changes();
        let mut failed = false;
        let mut grace_over = false;
        loop {
            let retry = async {
                if failed {
                    tokio::time::sleep(self.retry).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                changed = kicks.changed() => if changed.is_err() { return },
                changed = proxies.changed() => if changed.is_err() { return },
                () = retry => {}
                // The statuses held while proxies resubscribed are due now.
                () = tokio::time::sleep_until(self.grace_until), if !grace_over => grace_over = true,
            }
            // Let a burst of changes settle into one write per object.
            tokio::time::sleep(self.delay).await;
            kicks.borrow_and_update();
            proxies.borrow_and_update();
            failed = !self.write_changed().await;
        }
    }

    /// Writes the statuses that differ from what the objects hold; false if a write failed.
    async fn write_changed(&mut self) -> bool {
        let proxies = self.control_plane.proxies();
        let root = self.control_plane.root_namespace().to_owned();
        let now = SystemTime::now();
        let resubscribing = tokio::time::Instant::now() < self.grace_until;
        let wanted: Vec<(Key, Arc<WasmFilterResource>, WasmFilterStatus)> = {
            let state = lock(&self.state);
            self.written
                .retain(|key, _| state.entries.contains_key(key));
            state
                .entries
                .iter()
                .filter_map(|(key, entry)| {
                    let status = compute_status(entry, &proxies, &root, now);
                    if keeps_recorded_status(entry, &status, resubscribing) {
                        tracing::debug!(filter = %key, "keeping the recorded status until proxies report");
                        return None;
                    }
                    Some((key.clone(), entry.object.clone(), status))
                })
                .collect()
        };
        let mut ok = true;
        for (key, object, status) in wanted {
            let current = self.written.get(&key).or(object.status.as_ref());
            if current.is_some_and(|c| same_status(c, &status)) {
                continue;
            }
            let namespace = object.namespace().unwrap_or_default();
            let api: Api<WasmFilterResource> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "apiVersion": crate::definition::API_VERSION,
                "kind": crate::definition::KIND,
                "status": status,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api
                .patch_status(&object.name_any(), &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    tracing::debug!(filter = %key, "status written");
                    self.written.insert(key, status);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // Deleted meanwhile; the watch will tell.
                }
                Err(e) => {
                    tracing::warn!(filter = %key, error = %e, "cannot write the WasmFilter status; will retry");
                    ok = false;
                }
            }
        }
        ok
    }
}
