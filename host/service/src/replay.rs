//! Policy replay (`POST /api/v1/policies/replay`, `custos policy replay`): the recorded
//! sign requests of a period decided again with a candidate policy set, so a risk team
//! sees what an edit would have changed before it goes live.
//!
//! Each request is decided with what was recorded for it: its intent, requester, source
//! address and time. The wallet is the key as it is now (its tags may have changed since).
//! The 24 h velocity figures are rebuilt from the requests that really signed, in time
//! order, so each request sees the history it saw then, counted the way the current
//! engine counts (assets, fees, request count). Nothing is signed, written or audited
//! apart from one POLICY_REPLAY entry naming the period and the counts.

use crate::error::ApiError;
use crate::requests::{SignRecord, State};
use crate::service::Service;
use custos_plugin_sdk::Intent;
use custos_policy::velocity::{MemoryVelocity, WINDOW_SECS, record_signed, velocity_for};
use custos_policy::{
    Action, ClientRef, DecisionRequest, PolicySnapshot, RequestFacts, Verdict, WalletRef,
};
use serde_json::{Value, json};

/// The most requests one replay decides; beyond it the answer says it was cut short.
pub const MAX_REPLAYED: usize = 100_000;

fn verdict_text(v: &Verdict) -> (String, u32) {
    match v {
        Verdict::Allow => ("ALLOW".into(), 0),
        Verdict::Deny => ("DENY".into(), 0),
        Verdict::NeedsApproval(n) => ("NEEDS_APPROVAL".into(), *n),
    }
}

fn action_of(data_type: &str) -> Option<Action> {
    Some(match data_type {
        "RAW_TX" => Action::SignTransaction,
        "EIP191" | "EIP712" => Action::SignMessage,
        "HASH" => Action::SignHash,
        _ => return None,
    })
}

impl Service {
    /// Decides again, with `candidate`, every sign request recorded in `(now - since, now]`.
    pub(crate) fn replay(
        &self,
        candidate: &PolicySnapshot,
        since_secs: i64,
        now: i64,
    ) -> Result<Value, ApiError> {
        let from = now - since_secs;
        let mut records: Vec<(i64, SignRecord)> = Vec::new();
        let mut truncated = false;
        for rec in self.requests.all()? {
            // Requests that never reached a decision (IN_PROGRESS, or refused before policy)
            // carry no intent.
            if rec.intent.is_null() || rec.policy.is_null() {
                continue;
            }
            let Ok(t) = custos_policy::facts::parse_utc(&rec.created_at) else {
                continue;
            };
            // The day before the period feeds the velocity figures of its first requests.
            if t > now || t <= from - WINDOW_SECS {
                continue;
            }
            if records.len() >= MAX_REPLAYED {
                truncated = true;
                break;
            }
            records.push((t, rec));
        }
        records.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.request_id.cmp(&b.1.request_id)));

        let history = MemoryVelocity::new();
        let clients = self.auth.clients();
        let (mut decided, mut unchanged) = (0usize, 0usize);
        let mut changed = Vec::new();
        let mut skipped = Vec::new();
        for (t, rec) in &records {
            let intent = match Intent::from_json(&rec.intent) {
                Ok(i) => i,
                Err(e) => {
                    skipped.push(json!({"request_id": rec.request_id, "reason": format!("recorded intent unreadable: {e}")}));
                    continue;
                }
            };
            let in_period = *t > from;
            if in_period {
                let data_type = rec.request["data_type"].as_str().unwrap_or_default();
                let client = clients.iter().find(|c| c.access_key == rec.client);
                let key = self.registry.get(&rec.key_id);
                match (action_of(data_type), client, key) {
                    (Some(action), Some(client), Ok(key)) => {
                        let velocity = velocity_for(&history, &key.key_id, &intent, *t)
                            .map_err(|e| ApiError::internal(e.to_string()))?;
                        let tags = key.policy_tags();
                        let groups = key.groups();
                        let addresses: Vec<(String, String)> = key
                            .addresses
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        let roles = client.role_names();
                        let d = custos_policy::evaluate(
                            candidate,
                            &DecisionRequest {
                                principal: ClientRef {
                                    id: &client.access_key,
                                    name: &client.name,
                                    roles: &roles,
                                },
                                action,
                                wallet: WalletRef {
                                    id: &key.key_id,
                                    label: &key.label,
                                    tags: &tags,
                                    curve: key.format.curve.as_str(),
                                    addresses: &addresses,
                                    groups: &groups,
                                },
                                intent: &intent,
                                velocity,
                                facts: RequestFacts::at(
                                    rec.client_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                                    *t,
                                ),
                                operation: None,
                            },
                        );
                        decided += 1;
                        let (decision, approvals) = verdict_text(&d.verdict);
                        let was = rec.policy["decision"].as_str().unwrap_or_default();
                        let was_approvals = rec.approvals_required;
                        if was == decision && (decision != "NEEDS_APPROVAL" || was_approvals == approvals) {
                            unchanged += 1;
                        } else {
                            changed.push(json!({
                                "request_id": rec.request_id,
                                "client": client.name,
                                "key_id": rec.key_id,
                                "time": rec.created_at,
                                "state": rec.state.as_str(),
                                "recorded": {
                                    "decision": was,
                                    "approvals": was_approvals,
                                    "policies": rec.policy["policies"].clone(),
                                },
                                "candidate": {
                                    "decision": decision,
                                    "approvals": approvals,
                                    "policies": d.policies,
                                    "errors": d.errors,
                                },
                                "intent": rec.intent.clone(),
                            }));
                        }
                    }
                    (None, _, _) => skipped.push(json!({"request_id": rec.request_id, "reason": format!("data type `{data_type}` is not a signing request")})),
                    (_, None, _) => skipped.push(json!({"request_id": rec.request_id, "reason": "its client is no longer configured"})),
                    (_, _, Err(_)) => skipped.push(json!({"request_id": rec.request_id, "reason": format!("key `{}` is gone", rec.key_id)})),
                }
            }
            // The history is what really happened, whatever the candidate says.
            if rec.state == State::Signed {
                record_signed(&history, &rec.key_id, &intent, *t)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
        }
        Ok(json!({
            "from": crate::clock::rfc3339(from),
            "to": crate::clock::rfc3339(now),
            "decided": decided,
            "unchanged": unchanged,
            "changed": changed,
            "skipped": skipped,
            "truncated": truncated,
        }))
    }
}

/// Body of `POST /api/v1/policies/replay`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// The period to replay, in seconds back from now (at most 90 days).
    pub since_secs: i64,
    /// The candidate policy folder: file name -> text (`custos.cedarschema`, `*.cedar`,
    /// `*.entities.json`), as `custos policy replay --policies DIR` reads it.
    pub files: std::collections::BTreeMap<String, String>,
}

pub const MAX_SINCE_SECS: i64 = 90 * 86_400;

impl Service {
    /// The replay endpoint: validates the candidate set, replays, audits POLICY_REPLAY.
    pub(crate) fn replay_request(
        &self,
        caller: &crate::service::Caller,
        body: &[u8],
    ) -> Result<(u16, Value), ApiError> {
        use crate::audit::{AuditResult, NewEntry};
        let b: ReplayBody =
            serde_json::from_slice(body).map_err(|e| crate::error::bad_json("replay body", &e))?;
        if !(1..=MAX_SINCE_SECS).contains(&b.since_secs) {
            return Err(ApiError::invalid(format!(
                "`since_secs` must be 1..={MAX_SINCE_SECS} (90 days), got {}",
                b.since_secs
            )));
        }
        let candidate = custos_policy::load_files(&b.files, "candidate").map_err(|e| {
            ApiError::invalid(format!(
                "the candidate policy set does not load: {}",
                crate::error::one_line(&e.to_string())
            ))
        })?;
        let now = caller.now;
        let out = self.replay(&candidate, b.since_secs, now)?;
        self.audit.append(
            NewEntry::new("POLICY_REPLAY", AuditResult::Ok)
                .principal(&caller.client.name)
                .client_ip(caller.ip.to_string())
                .details(json!({
                    "since_secs": b.since_secs,
                    "policies": candidate.policy_count(),
                    "decided": out["decided"],
                    "changed": out["changed"].as_array().map_or(0, Vec::len),
                })),
        )?;
        Ok((200, out))
    }
}
