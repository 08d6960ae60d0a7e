//! The sign path, one way through: `prepare` (the body parsed once, the key read once,
//! the plugin's intent and payloads) -> `decide` (policy and velocity reservation, under
//! the wallet's lock) -> `execute` (threshold signing, the native signature check,
//! assemble, audit, the recorded outcome). Each stage takes what the one before produced
//! and never calls back up. Approvals (`approvals.rs`) end in the same `execute`.
//!
//! Invariants: nothing is signed unless the policy allowed it (or its approvals quorum
//! was reached); a request is recorded before signing starts, so a retry never gets a
//! second signature; a signature is only returned after its KEY_SIGN audit entry is
//! written. A transient failure (`NODES_UNAVAILABLE`, `INTERRUPTED`) is not final: the
//! same request id and body runs the request again (decided again, with what holds now;
//! an approved request keeps its approvals).

mod approvals;
mod decide;
mod execute;
mod prepare;

pub use approvals::ApprovalBody;

use crate::audit::{AuditResult, NewEntry};
use crate::auth::{Client, Role, require_role};
use crate::clock;
use crate::error::{ApiError, ApiResult, Code, bad_json};
use crate::requests::{Found, SignRecord, State};
use crate::service::{Caller, Service};
use custos_policy::Verdict;
use decide::Decided;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
use utoipa::ToSchema;

/// Body of `POST /keys/{key_id}/sign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignRequest)]
pub struct SignBody {
    /// 1-128 characters of [A-Za-z0-9._:-], scoped to the calling client
    pub request_id: String,
    /// evm | bitcoin | tron | solana
    pub chain: String,
    #[serde(default)]
    pub network: Option<String>,
    /// RAW_TX | EIP191 | EIP712 | HASH
    pub data_type: String,
    /// 0x hex, or the EIP-712 typed-data object
    #[schema(value_type = Object)]
    pub data: Value,
    #[serde(default)]
    pub dry_run: bool,
}

/// Who a sign request is for: the client that sent it, where from, when. Decisions are
/// made for the requester, also when an approver's call reaches the quorum.
#[derive(Clone, Debug)]
pub(crate) struct Requester {
    pub access_key: String,
    pub name: String,
    pub roles: Vec<String>,
    pub ip: IpAddr,
    pub now: i64,
}

impl Requester {
    pub fn new(client: &Client, ip: IpAddr, now: i64) -> Self {
        Self {
            access_key: client.access_key.clone(),
            name: client.name.clone(),
            roles: client.role_names(),
            ip,
            now,
        }
    }
}

pub(crate) use crate::requests::reservation_hex;

pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// "The same request": the key id and the JSON body (keys sorted, whitespace ignored),
/// without `dry_run` ([`crate::requests::request_hash`]). The key id is inside, so the
/// same request id and body sent to another key is `REQUEST_ID_REUSED`, not a replay.
pub fn body_hash(key_id: &str, v: &Value) -> String {
    crate::requests::request_hash(key_id, v)
}

pub fn decode_hex(field: &str, s: &str) -> ApiResult<Vec<u8>> {
    let h = s
        .strip_prefix("0x")
        .ok_or_else(|| ApiError::invalid(format!("`{field}` must be 0x-prefixed hex")))?;
    hex::decode(h).map_err(|_| ApiError::invalid(format!("`{field}` is not valid hex")))
}

/// The policy part of an answer: the verdict's name and the deciding policies (and the
/// evaluation errors, if any).
fn policy_block(decision: &custos_policy::Decision) -> Value {
    let mut policy =
        json!({"decision": verdict_name(&decision.verdict), "policies": decision.policies});
    if !decision.errors.is_empty() {
        policy["errors"] = json!(decision.errors);
    }
    policy
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
        Verdict::NeedsApproval(_) => "NEEDS_APPROVAL",
    }
}

impl Service {
    /// `POST /keys/{key_id}/sign`.
    pub(crate) async fn sign_request(
        &self,
        caller: &Caller,
        key_id: &str,
        bytes: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Signer])?;
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad_json("body is not valid JSON", &e))?;
        let value = prepare::exact_eip712_data(bytes, value);
        let body = SignBody::deserialize(&value).map_err(|e| bad_json("sign request", &e))?;
        if !valid_request_id(&body.request_id) {
            return Err(ApiError::invalid(
                "`request_id` must be 1-128 characters of [A-Za-z0-9._:-]",
            ));
        }
        let key = self.registry.get(key_id)?;
        let hash = body_hash(key_id, &value);
        let requester = Requester::new(&caller.client, caller.ip, caller.now);
        if !body.dry_run
            && let Found::Replay(r) = self.requests.check(
                &requester.access_key,
                &body.request_id,
                key_id,
                &value,
                &hash,
            )?
        {
            if !r.retryable() {
                return Ok(r.view());
            }
            // Tried again: an approved request with its approvals, any other from the top
            // (its new record replaces the failed one in `insert_new`).
            if r.approvals_required > 0 {
                return self.retry_approved(caller, &r).await;
            }
        }
        if key.status != crate::registry::Status::Active {
            return Err(ApiError::new(
                Code::KeyNotActive,
                format!(
                    "key `{key_id}` is {}, only ACTIVE keys sign",
                    key.status.as_str()
                ),
            ));
        }
        let dry_run = body.dry_run;
        let prepared = self.prepare(key, body, value, hash)?;
        let decided = self.decide(&requester, prepared, !dry_run)?;
        self.metrics
            .decision(verdict_name(&decided.decision.verdict));
        if dry_run {
            return self.answer_dry_run(&requester, decided);
        }
        match decided.decision.verdict.clone() {
            Verdict::Deny => self.record_denial(&requester, decided),
            Verdict::NeedsApproval(n) => self.hold_for_approval(&requester, decided, n),
            Verdict::Allow => {
                let rec = self.new_record(&requester, &decided, State::InProgress);
                match self.requests.insert_new(&rec) {
                    Ok(Found::New) => {}
                    Ok(Found::Replay(r)) => {
                        self.release(decided.reservation);
                        return Ok(r.view());
                    }
                    Err(e) => {
                        self.release(decided.reservation);
                        return Err(e);
                    }
                }
                self.execute(&requester, decided).await
            }
        }
    }

    /// The record of a new request, in `state`.
    fn new_record(&self, requester: &Requester, d: &Decided, state: State) -> SignRecord {
        let p = &d.prepared;
        let mut rec = SignRecord::new(
            &requester.access_key,
            &p.body.request_id,
            &p.body_hash,
            &p.key.key_id,
            &clock::rfc3339(requester.now),
        );
        rec.request = p.request.clone();
        rec.client_ip = Some(requester.ip.to_string());
        rec.intent = p.intent.to_json();
        rec.policy = d.policy.clone();
        rec.state = state;
        rec.reservation = reservation_hex(&d.reservation);
        rec
    }

    /// An audit entry about this request, with what every sign entry carries.
    fn sign_entry(
        &self,
        requester: &Requester,
        d: &Decided,
        op: &str,
        result: AuditResult,
    ) -> NewEntry {
        let p = &d.prepared;
        NewEntry::new(op, result)
            .principal(&requester.name)
            .key_id(&p.key.key_id)
            .request_id(&p.body.request_id)
            .data_hash(&p.data_hash)
            .client_ip(requester.ip.to_string())
            .details(json!({"chain": p.body.chain, "data_type": p.body.data_type,
                "intent": p.intent.to_json(), "policy": d.policy}))
    }

    fn answer_dry_run(&self, requester: &Requester, d: Decided) -> ApiResult<(u16, Value)> {
        self.audit
            .append(self.sign_entry(requester, &d, "POLICY_DRY_RUN", AuditResult::Ok))?;
        let p = &d.prepared;
        Ok((
            200,
            json!({"request_id": p.body.request_id, "status": "DRY_RUN", "key_id": p.key.key_id,
                "intent": p.intent.to_json(), "policy": d.policy}),
        ))
    }

    fn record_denial(&self, requester: &Requester, d: Decided) -> ApiResult<(u16, Value)> {
        let decision = &d.decision;
        let mut msg = format!(
            "denied by policy: {}",
            if decision.policies.is_empty() {
                "no policy permits this request".to_string()
            } else {
                decision.policies.join(", ")
            }
        );
        if !decision.errors.is_empty() {
            msg.push_str(&format!(
                "; evaluation errors: {}",
                decision.errors.join("; ")
            ));
        }
        let err = ApiError::new(Code::PolicyDenied, msg)
            .with("policies", json!(decision.policies))
            .with("request_id", json!(d.prepared.body.request_id));
        let mut rec = self.new_record(requester, &d, State::Denied);
        rec.outcome = Some((403, err.body()));
        if let Found::Replay(r) = self.requests.insert_new(&rec)? {
            return Ok(r.view());
        }
        self.audit
            .append(self.sign_entry(requester, &d, "KEY_SIGN", AuditResult::Denied))?;
        Err(err)
    }

    fn hold_for_approval(
        &self,
        requester: &Requester,
        d: Decided,
        n: u32,
    ) -> ApiResult<(u16, Value)> {
        let mut rec = self.new_record(requester, &d, State::PendingApproval);
        rec.approvals_required = n;
        if let Found::Replay(r) = self.requests.insert_new(&rec)? {
            return Ok(r.view());
        }
        let p = &d.prepared;
        self.audit.append(
            self.sign_entry(requester, &d, "APPROVAL_REQUEST", AuditResult::Pending)
                .details(json!({"chain": p.body.chain, "data_type": p.body.data_type,
                    "intent": p.intent.to_json(), "policy": d.policy, "approvals_required": n})),
        )?;
        Ok(rec.view())
    }

    /// `GET /requests/{request_id}`: the caller's own request; for approvers and
    /// auditors, another client's too (request ids are scoped to their client). With
    /// `requester` (a client name or access key), that client's request; without, the
    /// caller's own, else the one request of that id, else the one pending approval;
    /// several are 409, naming their requesters. A client without those roles never
    /// learns whether another client used an id.
    pub(crate) fn request_view(
        &self,
        caller: &Caller,
        request_id: &str,
        requester: Option<&str>,
    ) -> ApiResult<(u16, Value)> {
        let not_found =
            || ApiError::new(Code::RequestNotFound, format!("no request `{request_id}`"));
        let me = &caller.client.access_key;
        let privileged =
            caller.client.has_role(Role::Approver) || caller.client.has_role(Role::Auditor);
        if let Some(q) = requester {
            let owner = if q == me || q == caller.client.name {
                me.clone()
            } else if privileged {
                self.requester_key(q)?
            } else {
                return Err(not_found());
            };
            return match self.requests.get(&owner, request_id)? {
                Some(r) => Ok(r.view()),
                None => Err(not_found()),
            };
        }
        if let Some(r) = self.requests.get(me, request_id)? {
            return Ok(r.view());
        }
        if !privileged {
            return Err(not_found());
        }
        let owners = self.requests.clients_of(request_id)?;
        let mut records = Vec::with_capacity(owners.len());
        for o in &owners {
            if let Some(r) = self.requests.get(o, request_id)? {
                records.push(r);
            }
        }
        if records.len() > 1 {
            records.retain(|r| r.state == State::PendingApproval);
        }
        match records.as_slice() {
            [one] => Ok(one.view()),
            [] if owners.len() <= 1 => Err(not_found()),
            _ => Err(ApiError::new(
                Code::RequestIdReused,
                format!(
                    "request id `{request_id}` was used by more than one client ({}); name the requester: `?requester=<client name>`",
                    self.client_list(&owners)
                ),
            )),
        }
    }
}
