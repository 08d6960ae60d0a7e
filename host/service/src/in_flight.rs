//! What is in flight on keys and nodes, held by the service: keys whose next generation
//! is being staged (`generations.rs`, `keys.rs`, `repair.rs`) and node repairs with their
//! progress (`repair.rs`). State only; the work is done where it is named.

use crate::error::{ApiError, ApiResult, Code};
use custos_wire::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// Key ids with a staging operation in flight.
#[derive(Default)]
pub(crate) struct Staging(Arc<Mutex<HashSet<String>>>);

/// Held while a key's generation is being staged; released when dropped.
pub(crate) struct StagingGuard(Arc<Mutex<HashSet<String>>>, String);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

impl Staging {
    pub(crate) fn hold(&self, key_id: &str) -> ApiResult<StagingGuard> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key_id.to_string()) {
            return Err(ApiError::new(
                Code::InvalidTransition,
                format!(
                    "a keygen, refresh, repair or move of key `{key_id}` is in progress; retry when it has ended"
                ),
            ));
        }
        Ok(StagingGuard(self.0.clone(), key_id.to_string()))
    }

    pub(crate) fn is_held(&self, key_id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key_id)
    }
}

/// One node's repair, as `GET /api/v1/nodes` shows it; kept in `Cf::Meta` so a host
/// restart does not lose it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct RepairProgress {
    /// RUNNING, DONE (every repairable key repaired), FAILED (some failed) or INTERRUPTED
    /// (the host stopped while it ran: start it again; `generation_lag` shows what is left).
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Keys the node should hold that needed a repair.
    pub total: usize,
    pub repaired: Vec<String>,
    pub failed: Vec<Value>,
    pub not_repairable: Vec<Value>,
    /// Keys the node already held at their generation.
    pub up_to_date: usize,
}

impl RepairProgress {
    /// What a repair recorded as RUNNING is after a host restart: nothing runs it any more.
    pub(crate) fn after_restart(mut self) -> Self {
        if self.state == "RUNNING" {
            self.state = "INTERRUPTED".into();
        }
        self
    }
}

/// Repairs by node (the last one of each node is kept).
#[derive(Default)]
pub(crate) struct Repairs(Mutex<BTreeMap<NodeId, RepairProgress>>);

impl Repairs {
    /// Changes node `node`'s progress; returns it as it is now.
    pub(crate) fn update(
        &self,
        node: NodeId,
        f: impl FnOnce(&mut RepairProgress),
    ) -> RepairProgress {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let p = m.entry(node).or_default();
        f(p);
        p.clone()
    }

    pub(crate) fn get(&self, node: NodeId) -> Option<RepairProgress> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .cloned()
    }

    pub(crate) fn running(&self, node: NodeId) -> bool {
        self.get(node).is_some_and(|p| p.state == "RUNNING")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_repair_is_interrupted_by_a_restart_and_an_ended_one_stays() {
        let p = |state: &str| RepairProgress {
            state: state.into(),
            ..Default::default()
        };
        assert_eq!(p("RUNNING").after_restart().state, "INTERRUPTED");
        for s in ["DONE", "FAILED", "INTERRUPTED"] {
            assert_eq!(p(s).after_restart().state, s);
        }
        let r = Repairs::default();
        assert!(!r.running(2));
        assert_eq!(r.update(2, |p| p.state = "RUNNING".into()).state, "RUNNING");
        assert!(r.running(2));
    }
}
