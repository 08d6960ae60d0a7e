//! Keys' generations on the host side (DESIGN §4a): the host's key record is where a
//! staged generation is decided. A keygen, refresh, repair or move stages a generation on
//! every participant; [`Service::settle_staged`] records it in the key record (the
//! decision), then commits it on the holders. A node that held a staged generation when
//! the decision was taken without it (it was down, the host crashed, the session failed)
//! reports it in its health, and [`Service::resolve_staged`] commits it when the key
//! record names that generation and the node as a holder, and drops it otherwise.
//!
//! While an operation stages a key's generation, the key is held in [`Staging`]: a second
//! one is refused (409), and the resolver leaves the key alone.

use crate::audit::{AuditResult, NewEntry};
use crate::error::{ApiError, ApiResult, Code};
use crate::registry::KeyRecord;
use crate::service::Service;
use custos_coordinator::StagedOutcome;
use serde_json::json;

/// Whether `node`'s staged `generation` of a key is the one to commit: the key record
/// names that generation and that node among the holders, and the key is not destroyed.
/// Anything else (no such key, an older or newer generation, a node the key was moved
/// off, a destroyed key) is dropped.
fn commits(key: Option<&KeyRecord>, node: u16, generation: u64) -> bool {
    key.is_some_and(|k| {
        k.generation == generation
            && k.nodes.contains(&node)
            && k.status != crate::registry::Status::Destroyed
    })
}

impl Service {
    /// Decides a staged generation of `key`: the public key must be the key's; the key
    /// record takes the new generation and holders `nodes_after` (one synced write), then
    /// the holders commit. If the decision cannot be recorded, the staged generation is
    /// dropped on every holder and the key stays as it was.
    pub(crate) async fn settle_staged(
        &self,
        key: &KeyRecord,
        staged: StagedOutcome,
        nodes_after: Vec<u16>,
    ) -> ApiResult<KeyRecord> {
        let mut participants = nodes_after.clone();
        participants.extend(key.nodes.iter().copied());
        participants.sort_unstable();
        participants.dedup();
        if format!("0x{}", hex::encode(&staged.public_key)) != key.public_key {
            self.coord
                .drop_staged(&key.key_id, staged.generation, &participants)
                .await;
            return Err(ApiError::internal(
                "the nodes staged shards of another public key; dropped, the old generation stays",
            ));
        }
        let rec = match self.registry.set_generation(
            &key.key_id,
            key.generation,
            staged.generation,
            nodes_after.clone(),
        ) {
            Ok(r) => r,
            Err(e) => {
                self.coord
                    .drop_staged(&key.key_id, staged.generation, &participants)
                    .await;
                return Err(e);
            }
        };
        let commit = self
            .coord
            .commit(&key.key_id, staged.generation, &nodes_after)
            .await;
        if !commit.missed.is_empty() {
            tracing::warn!(key = %key.key_id, generation = staged.generation, missed = ?commit.missed, "generation recorded; some holders commit later");
        }
        Ok(rec)
    }

    /// Commits or drops the generations the nodes report staged (see the module doc).
    /// Returns how many were resolved.
    pub(crate) async fn resolve_staged(&self) -> usize {
        let (up, _down) = self.coord.survey().await;
        let mut n = 0;
        for (node, health) in up {
            for st in health.staged {
                if self.staging.is_held(&st.key_id) {
                    continue;
                }
                let key = match self.registry.get(&st.key_id) {
                    Ok(k) => Some(k),
                    Err(e) if e.code == Code::KeyNotFound => None,
                    // The registry cannot say: decide nothing now.
                    Err(_) => continue,
                };
                let commit = commits(key.as_ref(), node, st.generation);
                match self
                    .coord
                    .resolve(node, &st.key_id, st.generation, commit)
                    .await
                {
                    Ok(res) => {
                        n += 1;
                        tracing::info!(node, key = %st.key_id, generation = st.generation, ?res, "staged generation resolved");
                        let _ = self.audit.append(
                            NewEntry::new("KEY_GENERATION", AuditResult::Ok)
                                .key_id(&st.key_id)
                                .nodes(vec![node])
                                .details(json!({"generation": st.generation, "resolution": if commit {"COMMIT"} else {"DROP"}, "after": "node restart or missed commit"})),
                        );
                    }
                    Err(e) => {
                        tracing::warn!(node, key = %st.key_id, generation = st.generation, "resolving a staged generation failed: {e}")
                    }
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_generation_is_committed_only_where_the_record_names_it() {
        let json = serde_json::json!({
            "v": 1, "key_id": "k", "label": "l", "tags": {}, "public_key": "0x02",
            "addresses": {}, "status": "ACTIVE",
            "format": {"type": "ECC", "curve": "SECP256K1", "algo_type": "DKLS23", "size": 32},
            "shard_properties": {"shard_count": 3, "threshold": 2},
            "nodes": [1, 2, 4], "created_at": "t", "status_history": [], "generation": 3
        });
        let k: KeyRecord = serde_json::from_value(json).unwrap();
        assert!(commits(Some(&k), 2, 3));
        assert!(
            !commits(Some(&k), 2, 4),
            "a generation the host never decided"
        );
        assert!(!commits(Some(&k), 2, 2), "an older one");
        assert!(!commits(Some(&k), 3, 3), "a node the key was moved off");
        assert!(!commits(None, 1, 1), "a keygen the host never registered");
        let mut destroyed = k.clone();
        destroyed.status = crate::registry::Status::Destroyed;
        assert!(!commits(Some(&destroyed), 2, 3), "a destroyed key");
        // A record from before generations is at the first.
        let mut old = serde_json::to_value(&k).unwrap();
        old.as_object_mut().unwrap().remove("generation");
        let old: KeyRecord = serde_json::from_value(old).unwrap();
        assert!(commits(Some(&old), 1, 1));
    }
}
