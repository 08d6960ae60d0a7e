//! Rebuilding a node and moving keys (DESIGN §4a, §7).
//!
//! `POST /api/v1/nodes/{id}/repair` rebuilds, in the background, every shard the node
//! should hold and does not hold at the key's generation (its store was lost, or it was
//! restored from an older backup): for each such key, the other holders rebuild the
//! node's share and every holder stages a new generation (DKLS23 `repair` + a complete
//! refresh; FROST `repair_share` + a refresh), which is then decided and committed as a
//! refresh is (`generations.rs`). Addresses do not change. A CGGMP21 key cannot be
//! repaired (cggmp21 0.6 has no share repair or refresh): it is reported, with what to
//! do instead. Progress, and each node's generation lag, are in `GET /api/v1/nodes`.
//!
//! `POST /api/v1/keys/{id}/move` `{"from":N,"to":M}` re-shares a key onto the holder set
//! with M in N's place (the same public key), commits it there, and makes N erase its
//! shard (retried until N confirms, like a destroyed key's).

use crate::audit::{AuditResult, NewEntry};
use crate::auth::{Role, require_role};
use crate::clock;
use crate::db::Cf;
use crate::error::{ApiError, ApiResult, Code, bad_json};
use crate::in_flight::RepairProgress;
use crate::registry::{KeyFilter, KeyRecord, Status};
use crate::service::{Caller, Service, held, node_backup_key};
use custos_wire::{Algo, NodeId, RepairOp, holdings_digest};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What a CGGMP21 key on a lost node needs instead of a repair.
pub(crate) const CGGMP21_LOST: &str = "CGGMP21 shards cannot be repaired or moved (cggmp21 0.6 has no share repair or refresh): this node's shard of the key is lost; the key still signs with its other holders while enough of them are up. Generate a new key and sweep the funds to it, then destroy this one";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The holder the key leaves.
    pub from: u16,
    /// The node that takes its place.
    pub to: u16,
}

/// `Cf::Meta` key of node `node`'s last repair progress.
fn repair_key(node: NodeId) -> Vec<u8> {
    format!("node_repair/{node}").into_bytes()
}

/// One node's state beside its health in `GET /api/v1/nodes`.
pub(crate) struct NodeSync {
    pub lag: Option<Vec<Value>>,
    pub backup: Value,
}

impl Service {
    /// Every key (not destroyed) whose holders include `node`.
    fn keys_on(&self, node: NodeId) -> ApiResult<Vec<KeyRecord>> {
        let mut keys = self.all_keys()?;
        keys.retain(|k| k.nodes.contains(&node));
        Ok(keys)
    }

    /// Per node: its generation lag (the keys it should hold, by the registry, that it
    /// holds at another generation or not at all; `None` when down) and its backup state.
    pub(crate) async fn node_sync(&self) -> BTreeMap<NodeId, NodeSync> {
        let (up, down) = self.coord.survey().await;
        let mut out = BTreeMap::new();
        for id in down {
            out.insert(
                id,
                NodeSync {
                    lag: None,
                    backup: self.backup_state(id, None),
                },
            );
        }
        let keys = self.all_keys().ok();
        for (id, h) in up {
            let held = held(&h);
            let lag = keys.as_ref().map(|keys| {
                keys.iter()
                    .filter(|k| k.nodes.contains(&id))
                    .filter_map(|k| {
                        let has = held.get(k.key_id.as_str()).copied();
                        (has != Some(k.generation)).then(|| {
                            json!({"key_id": k.key_id, "generation": k.generation, "held": has,
                            "algo_type": k.format.algo_type.as_str()})
                        })
                    })
                    .collect()
            });
            let backup = self.backup_state(id, Some(&held));
            out.insert(id, NodeSync { lag, backup });
        }
        out
    }

    /// Node `id`'s last backup, as its `BACKUP` event told the host: `at` (RFC 3339, the
    /// node's clock; null if none was seen) and `current`: whether the node holds now
    /// exactly the keys and generations that backup holds (false with no backup, null when
    /// the node is down or the backup predates the holdings digest). A refresh, repair,
    /// move, keygen or destroy after the backup makes it stale: back up again.
    pub(crate) fn backup_state(&self, id: NodeId, held: Option<&BTreeMap<&str, u64>>) -> Value {
        let last: Option<Value> = self
            .db
            .get(Cf::Meta, &node_backup_key(id))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(last) = last else {
            return json!({"at": null, "current": held.map(|_| false)});
        };
        let at = last["at"].as_i64().map(clock::rfc3339);
        let current = match (held, last["holdings"]["sha256"].as_str()) {
            (Some(held), Some(digest)) => {
                Some(holdings_digest(held.iter().map(|(k, g)| (*k, *g))) == digest)
            }
            _ => None,
        };
        json!({"at": at, "current": current})
    }

    /// Every key not destroyed.
    fn all_keys(&self) -> ApiResult<Vec<KeyRecord>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.registry.list(&KeyFilter {
                status: None,
                label: None,
                tag: None,
                limit: 1000,
                cursor,
            })?;
            out.extend(page.into_iter().filter(|k| k.status != Status::Destroyed));
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Changes node `node`'s repair progress and keeps it durably (`Cf::Meta`), so that
    /// `GET /api/v1/nodes` still shows it after a host restart. A write that fails is
    /// logged: the progress is for operators, the repair's effects are in the key records.
    fn repair_progress(&self, node: NodeId, f: impl FnOnce(&mut RepairProgress)) {
        let now = self.repairs.update(node, f);
        if let Err(e) = self.db.put_json(Cf::Meta, &repair_key(node), &now) {
            tracing::error!(node, error = %e, "could not record the repair's progress");
        }
    }

    /// At start: the last repair of each node as recorded; one that was running when the
    /// host stopped is INTERRUPTED, audited as such (`NODE_REPAIR` FAILED).
    pub(crate) fn load_repairs(&self) -> ApiResult<()> {
        for node in self.coord.node_ids() {
            // An unreadable record is only a lost progress report: not a reason to stop.
            let Some(p) = self
                .db
                .get_json::<RepairProgress>(Cf::Meta, &repair_key(node))
                .ok()
                .flatten()
            else {
                continue;
            };
            let interrupted = p.state == "RUNNING";
            let p = p.after_restart();
            self.repair_progress(node, |now| *now = p.clone());
            if interrupted {
                self.audit.append(
                    NewEntry::new("NODE_REPAIR", AuditResult::Failed)
                        .nodes(vec![node])
                        .details(json!({"interrupted": true, "repaired": p.repaired,
                            "failed": p.failed, "why": "the host stopped while the repair ran; start it again"})),
                )?;
            }
        }
        Ok(())
    }

    /// `POST /api/v1/nodes/{id}/repair`: starts the node's repair (202) and answers with
    /// what it will do; the work goes on in the background.
    pub(crate) async fn repair_node(
        self: &Arc<Self>,
        caller: &Caller,
        node: NodeId,
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Admin])?;
        if !self.coord.node_ids().contains(&node) {
            return Err(ApiError::invalid(format!(
                "node {node} is not in the node group"
            )));
        }
        if self.repairs.running(node) {
            return Err(ApiError::new(
                Code::InvalidTransition,
                format!("a repair of node {node} is already running (see GET /api/v1/nodes)"),
            ));
        }
        let health = self.coord.health(node).await.map_err(|e| {
            ApiError::new(
                Code::NodesUnavailable,
                format!("node {node} must be up to be repaired: {e}"),
            )
        })?;
        let held = held(&health);
        let mut to_repair = Vec::new();
        let mut not_repairable = Vec::new();
        let mut up_to_date = 0;
        for k in self.keys_on(node)? {
            if held.get(k.key_id.as_str()) == Some(&k.generation) {
                up_to_date += 1;
            } else if k.format.algo_type == crate::registry::Algo::Cggmp21 {
                not_repairable.push(
                    json!({"key_id": k.key_id, "algo_type": "CGGMP21", "reason": CGGMP21_LOST}),
                );
            } else {
                to_repair.push(k);
            }
        }
        let progress = RepairProgress {
            state: "RUNNING".into(),
            started_at: crate::clock::now_text(),
            finished_at: None,
            total: to_repair.len() + not_repairable.len(),
            repaired: vec![],
            failed: vec![],
            not_repairable: not_repairable.clone(),
            up_to_date,
        };
        self.repair_progress(node, |p| *p = progress.clone());
        let _ = self.audit.append(
            NewEntry::new("NODE_REPAIR", AuditResult::Pending)
                .principal(&caller.client.name)
                .nodes(vec![node])
                .client_ip(caller.ip.to_string())
                .details(
                    json!({"to_repair": to_repair.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
                    "not_repairable": not_repairable, "up_to_date": up_to_date}),
                ),
        );
        let svc = self.clone();
        let who = caller.client.name.clone();
        tokio::spawn(async move { svc.run_repair(node, to_repair, who).await });
        Ok((202, json!({"node": node, "repair": progress})))
    }

    async fn run_repair(self: Arc<Self>, node: NodeId, keys: Vec<KeyRecord>, who: String) {
        for key in keys {
            let t0 = Instant::now();
            let r = self.rebuild(&key, node, node, key.nodes.clone()).await;
            let entry = NewEntry::new("KEY_REPAIR", AuditResult::of(&r))
                .principal(&who)
                .key_id(&key.key_id)
                .nodes(key.nodes.clone())
                .duration_ms(t0.elapsed().as_millis() as u64);
            match r {
                Ok(rec) => {
                    let _ = self.audit.append(entry.details(
                        json!({"node": node, "generation": rec.generation, "public_key": rec.public_key}),
                    ));
                    self.repair_progress(node, |p| p.repaired.push(key.key_id.clone()));
                }
                Err(e) => {
                    tracing::warn!(node, key = %key.key_id, "repair failed: {}", e.message);
                    let _ = self
                        .audit
                        .append(entry.details(json!({"node": node, "error": e.message})));
                    self.repair_progress(node, |p| {
                        p.failed
                            .push(json!({"key_id": key.key_id, "error": e.message}))
                    });
                }
            }
        }
        let done = self.repairs.get(node).unwrap_or_default();
        let ok = done.failed.is_empty();
        self.repair_progress(node, |p| {
            p.state = if ok { "DONE" } else { "FAILED" }.into();
            p.finished_at = Some(crate::clock::now_text());
        });
        let _ = self.audit.append(
            NewEntry::new(
                "NODE_REPAIR",
                if ok {
                    AuditResult::Ok
                } else {
                    AuditResult::Failed
                },
            )
            .principal(&who)
            .nodes(vec![node])
            .details(json!({"repaired": done.repaired, "failed": done.failed,
                "not_repairable": done.not_repairable})),
        );
    }

    /// Rebuilds `replaces`'s share of `key` on `target` among `holders_after` and
    /// commits the new generation there.
    async fn rebuild(
        &self,
        key: &KeyRecord,
        target: NodeId,
        replaces: NodeId,
        holders_after: Vec<NodeId>,
    ) -> ApiResult<KeyRecord> {
        if key.format.algo_type == crate::registry::Algo::Cggmp21 {
            return Err(ApiError::new(Code::InvalidTransition, CGGMP21_LOST));
        }
        let _staging = self.staging.hold(&key.key_id)?;
        // The record as it is now (another operation may have moved it on).
        let key = self.registry.get(&key.key_id)?;
        let public_key = crate::sign::decode_hex("public_key", &key.public_key)
            .map_err(|_| ApiError::internal("the key's public key is not hex"))?;
        let op = RepairOp {
            key_id: key.key_id.clone(),
            generation: key.generation,
            public_key,
            threshold: key.shard_properties.threshold,
            holders: holders_after.clone(),
            target,
            replaces,
        };
        let algo: Algo = key.format.algo_type.wire();
        let staged = self.coord.repair(algo, op).await.map_err(ApiError::from)?;
        self.settle_staged(&key, staged, holders_after).await
    }

    /// `POST /api/v1/keys/{id}/move`.
    pub(crate) async fn move_key(
        &self,
        caller: &Caller,
        key_id: &str,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Admin])?;
        let b: MoveBody = serde_json::from_slice(body).map_err(|e| bad_json("move request", &e))?;
        let key = self.registry.get(key_id)?;
        if key.status == Status::Destroyed {
            return Err(ApiError::new(
                Code::KeyNotActive,
                format!("key `{key_id}` is DESTROYED"),
            ));
        }
        let Some(pos) = key.nodes.iter().position(|n| *n == b.from) else {
            return Err(ApiError::invalid(format!(
                "node {} holds no shard of key `{key_id}` (holders: {:?})",
                b.from, key.nodes
            )));
        };
        if key.nodes.contains(&b.to) {
            return Err(ApiError::invalid(format!(
                "node {} already holds a shard of key `{key_id}`",
                b.to
            )));
        }
        if !self.coord.node_ids().contains(&b.to) {
            return Err(ApiError::invalid(format!(
                "node {} is not in the node group",
                b.to
            )));
        }
        let mut after = key.nodes.clone();
        after[pos] = b.to;
        let t0 = Instant::now();
        let r = self.rebuild(&key, b.to, b.from, after.clone()).await;
        let entry = NewEntry::new("KEY_MOVE", AuditResult::of(&r))
            .principal(&caller.client.name)
            .key_id(key_id)
            .nodes(after.clone())
            .duration_ms(t0.elapsed().as_millis() as u64)
            .client_ip(caller.ip.to_string());
        let rec = match r {
            Ok(rec) => rec,
            Err(e) => {
                self.audit.append(
                    entry.details(json!({"from": b.from, "to": b.to, "error": e.message})),
                )?;
                return Err(e);
            }
        };
        // The old holder's shard is of a generation nobody else holds any more; it is
        // erased all the same (retried until the node confirms).
        let missed = self.coord.destroy(key_id, &[b.from]).await;
        let mut pending: Vec<u16> = rec
            .erase_pending
            .iter()
            .copied()
            .filter(|n| *n != b.to && !missed.contains(n))
            .collect();
        pending.extend(missed.iter().copied());
        if pending != rec.erase_pending {
            self.registry.set_erase_pending(key_id, pending)?;
        }
        self.audit
            .append(entry.details(json!({"from": b.from, "to": b.to,
            "generation": rec.generation, "erase_pending": missed})))?;
        Ok((200, rec.to_json()))
    }
}
