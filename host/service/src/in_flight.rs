//! What is in flight on keys and nodes, held by the service: keys whose next generation
//! is being staged (`generations.rs`, `keys.rs`, `repair.rs`) and node repairs with their
//! progress (`repair.rs`). State only; the work is done where it is named.

use crate::error::{ApiError, ApiResult, Code};
use custos_wire::NodeId;
use serde::Serialize;
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

/// One node's repair, as `GET /api/v1/nodes` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RepairProgress {
    /// RUNNING, DONE (every repairable key repaired) or FAILED (some failed).
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

/// Repairs by node (the last one of each node is kept).
#[derive(Default)]
pub(crate) struct Repairs(Mutex<BTreeMap<NodeId, RepairProgress>>);

impl Repairs {
    pub(crate) fn update(&self, node: NodeId, f: impl FnOnce(&mut RepairProgress)) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(node).or_default());
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
