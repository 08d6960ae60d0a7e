//! Approvals of held requests: `POST /requests/{id}/approve` and `/reject`. Reaching the
//! quorum decides the request again, for its requester, with what holds now; an ALLOW (or
//! enough approvals) goes on to the same `execute` as a request allowed at once.
//!
//! Request ids are scoped to their client, so an approver addresses a request by id and,
//! when needed, its requester (`?requester=` a client name or access key). Without it,
//! only requests pending approval are candidates, and two clients' pending requests of one
//! id are a 409 naming both, never a guess: a client that reuses another's request id can
//! neither take that request's approvals nor block them for an approver who names the
//! requester.

use super::decide::Decided;
use super::{Requester, SignBody};
use crate::audit::{AuditResult, NewEntry};
use crate::auth::{Role, require_role};
use crate::clock;
use crate::error::{ApiError, ApiResult, Code, bad_json};
use crate::operations::{Asked, WalletView};
use crate::registry::Status;
use crate::requests::{Approval, SignRecord, State};
use crate::service::{Caller, Service};
use custos_policy::{Action, Operation, Verdict};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// Body of `POST /requests/{id}/approve` and `/reject` (optional).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalRequest)]
pub struct ApprovalBody {
    comment: Option<String>,
    /// `0x` hex of the approver's Ed25519 signature over the request's
    /// `approval_statement` (required to approve when the host has pinned approvers).
    statement_signature: Option<String>,
}

impl Service {
    /// `POST /requests/{id}/approve` (`approve`) and `/reject`.
    pub(crate) async fn decide_approval(
        &self,
        caller: &Caller,
        request_id: &str,
        requester: Option<&str>,
        approve: bool,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Approver])?;
        let parsed = if body.iter().all(|b| b.is_ascii_whitespace()) {
            ApprovalBody::default()
        } else {
            serde_json::from_slice::<ApprovalBody>(body).map_err(|e| bad_json("body", &e))?
        };
        let comment = parsed.comment;
        let owner = self.approval_target(request_id, requester)?;
        let signature = if approve {
            let signature =
                self.check_statement(caller, &owner, request_id, parsed.statement_signature)?;
            self.decide_approve(caller, &owner, request_id)?;
            signature
        } else {
            None
        };
        let (quorum, rec) = self.record_approval(
            caller,
            &owner,
            request_id,
            approve,
            comment.clone(),
            signature,
        )?;
        let entry = NewEntry::new(
            "APPROVAL_RESULT",
            if approve {
                AuditResult::Ok
            } else {
                AuditResult::Denied
            },
        )
        .principal(&caller.client.name)
        .key_id(&rec.key_id)
        .request_id(request_id)
        .client_ip(caller.ip.to_string())
        .details(json!({"decision": if approve {"approve"} else {"reject"},
            "approvals": rec.approvals.len(), "approvals_required": rec.approvals_required,
            "comment": comment}));
        self.audit.append(entry)?;
        if !quorum {
            return Ok(rec.view());
        }
        self.sign_at_quorum(caller, &owner, request_id, &rec).await
    }

    /// A same-id retry of an approved request whose signing failed for a transient reason
    /// (`rec`, as found): signed again with the approvals it has, decided again with
    /// what holds now, as when its quorum was reached. Of two racing retries one runs it;
    /// the other answers with the request as it is then.
    pub(super) async fn retry_approved(
        &self,
        caller: &Caller,
        rec: &SignRecord,
    ) -> ApiResult<(u16, Value)> {
        let (owner, request_id) = (rec.client.as_str(), rec.request_id.as_str());
        if (rec.approvals.len() as u32) < rec.approvals_required {
            return Ok(rec.view());
        }
        let Some(rec) = self.requests.claim_retry(owner, request_id)? else {
            return match self.requests.get(owner, request_id)? {
                Some(r) => Ok(r.view()),
                None => Err(ApiError::new(
                    Code::RequestNotFound,
                    format!("no request `{request_id}`"),
                )),
            };
        };
        self.sign_at_quorum(caller, owner, request_id, &rec).await
    }

    /// The quorum of `rec` (now `IN_PROGRESS`) is reached: sign as the requester asked,
    /// if the key may still sign. Any failure before signing starts ends the request as
    /// FAILED.
    async fn sign_at_quorum(
        &self,
        caller: &Caller,
        owner: &str,
        request_id: &str,
        rec: &SignRecord,
    ) -> ApiResult<(u16, Value)> {
        let owner = owner.to_string();
        let fail = |e: ApiError| {
            let _ = self.requests.update(&owner, request_id, |r| {
                r.state = State::Failed;
                r.outcome = Some((e.code.status().as_u16(), e.body()));
                Ok(())
            });
            e
        };
        let (requester, decided) = self.decide_at_quorum(caller, &owner, rec).map_err(fail)?;
        match decided.decision.verdict {
            Verdict::Deny => return self.deny_at_quorum(&requester, &owner, decided),
            Verdict::NeedsApproval(n) if (rec.approvals.len() as u32) < n => {
                // The policy now asks for more approvals than were given: held again.
                let (_, rec) = self.requests.update(&owner, request_id, |r| {
                    r.state = State::PendingApproval;
                    r.approvals_required = n;
                    Ok(())
                })?;
                return Ok(rec.view());
            }
            _ => {}
        }
        let mut decided = decided;
        decided.approvals = rec.signed_approvals();
        if decided.reservation.is_none() && decided.decision.verdict != Verdict::Allow {
            // Approved past a NEEDS_APPROVAL: the amount counts from now.
            decided.reservation = self.reserve(&decided.prepared, caller.now).map_err(fail)?;
        }
        // Kept with the record, so that a crash while signing gives it back at start-up.
        let kept = super::reservation_hex(&decided.reservation);
        if let Err(e) = self.requests.update(&owner, request_id, |r| {
            r.reservation = kept;
            Ok(())
        }) {
            self.release(decided.reservation.take());
            return Err(fail(e));
        }
        // The answer shows the policy as it held the request, and who approved it; the
        // KEY_SIGN entry names the requester, calling from where the quorum was reached.
        decided.policy = rec.policy.clone();
        let signer = Requester {
            ip: caller.ip,
            ..requester
        };
        let (status, mut body) = self.execute(&signer, decided).await?;
        body["approvals"] = json!(rec.approvals);
        let _ = self.requests.update(&owner, request_id, |r| {
            r.outcome = Some((status, body.clone()));
            Ok(())
        });
        Ok((status, body))
    }

    /// Cedar's `approve` decision for the caller over the pending request: the wallet it
    /// signs with, its intent (the request prepared again), and `operation.request_id` /
    /// `requester` (the requesting client's name). A request that is not pending, or the
    /// caller's own, is left to [`Self::record_approval`] to refuse with its reason.
    fn decide_approve(&self, caller: &Caller, owner: &str, request_id: &str) -> ApiResult<()> {
        let Some(rec) = self.requests.get(owner, request_id)? else {
            return Ok(());
        };
        if rec.state != State::PendingApproval || rec.client == caller.client.access_key {
            return Ok(());
        }
        let body = SignBody::deserialize(&rec.request)
            .map_err(|e| ApiError::internal(format!("stored request does not decode: {e}")))?;
        let key = self.registry.get(&rec.key_id)?;
        let prepared = self.prepare(key, body, rec.request.clone(), rec.body_hash.clone())?;
        let requester = self
            .auth
            .clients()
            .get(owner)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| owner.to_string());
        self.decide_operation(
            caller,
            Asked {
                action: Action::Approve,
                audit_op: "APPROVAL_RESULT",
                request_id: Some(request_id),
            },
            &WalletView::of(&prepared.key),
            &prepared.intent,
            Operation {
                request_id: Some(request_id.to_string()),
                requester: Some(requester),
                ..Operation::default()
            },
        )
    }

    /// With pinned approvers, an approval must carry the caller's signature over the
    /// request's statement; it is checked here to answer early (the nodes check it
    /// again). Returns the signature as stored.
    fn check_statement(
        &self,
        caller: &Caller,
        owner: &str,
        request_id: &str,
        signature: Option<String>,
    ) -> ApiResult<Option<String>> {
        let Some(pins) = &self.approvers else {
            return Ok(signature);
        };
        let name = &caller.client.name;
        let rec = self.requests.get(owner, request_id)?.ok_or_else(|| {
            ApiError::new(Code::RequestNotFound, format!("no request `{request_id}`"))
        })?;
        if rec.state != State::PendingApproval || rec.client == caller.client.access_key {
            // Refused below with its own reason (not pending, or the requester itself).
            return Ok(signature);
        }
        let Some(sig_hex) = signature else {
            return Err(ApiError::invalid(format!(
                "`statement_signature` is required: sign the request's `approval_statement` (GET /api/v1/requests/{request_id}) with approver `{name}`'s key"
            )));
        };
        let sig = super::decode_hex("statement_signature", &sig_hex)?;
        if !pins.contains(name) {
            return Err(ApiError::forbidden(format!(
                "`{name}` is not a pinned approver; the nodes would not count this approval"
            )));
        }
        if !pins.verifies(name, rec.approval_statement().as_bytes(), &sig) {
            return Err(ApiError::forbidden(format!(
                "the statement signature does not verify with approver `{name}`'s pinned key over this request"
            )));
        }
        Ok(Some(format!("0x{}", hex::encode(sig))))
    }

    /// Adds the caller's approval (or rejection) to the pending request; returns whether
    /// the quorum is now reached (the record is then `IN_PROGRESS`) and the record.
    fn record_approval(
        &self,
        caller: &Caller,
        owner: &str,
        request_id: &str,
        approve: bool,
        comment: Option<String>,
        statement_signature: Option<String>,
    ) -> ApiResult<(bool, SignRecord)> {
        let name = caller.client.name.clone();
        let me = caller.client.access_key.clone();
        let at = clock::rfc3339(caller.now);
        self.requests.update(owner, request_id, |r| {
            if r.state != State::PendingApproval {
                return Err(ApiError::new(
                    Code::InvalidTransition,
                    format!(
                        "request `{request_id}` is {}, not pending approval",
                        r.state.as_str()
                    ),
                ));
            }
            if r.client == me {
                return Err(ApiError::forbidden(
                    "the requester cannot approve or reject its own request",
                ));
            }
            if r.approvals.iter().any(|a| a.by == me) {
                return Err(ApiError::new(
                    Code::InvalidTransition,
                    format!("request `{request_id}` was already approved by this approver"),
                ));
            }
            let a = Approval {
                by: me.clone(),
                at: at.clone(),
                comment,
                approver: name.clone(),
                statement_signature,
            };
            if !approve {
                r.state = State::Rejected;
                r.rejection = Some(a);
                let mut v = r.view().1;
                v["status"] = json!("REJECTED");
                r.outcome = Some((200, v));
                return Ok(false);
            }
            r.approvals.push(a);
            if r.approvals.len() as u32 >= r.approvals_required {
                r.state = State::InProgress;
                return Ok(true);
            }
            Ok(false)
        })
    }

    /// The stored request prepared and decided again, for the requester, with what holds
    /// now (the wallet's tags, the policy set, the 24 h figure): approvals release a held
    /// request, they do not override a DENY that has come since.
    fn decide_at_quorum(
        &self,
        caller: &Caller,
        owner: &str,
        rec: &SignRecord,
    ) -> ApiResult<(Requester, Decided)> {
        let body = SignBody::deserialize(&rec.request)
            .map_err(|e| ApiError::internal(format!("stored request does not decode: {e}")))?;
        let key = self.registry.get(&rec.key_id)?;
        if key.status != Status::Active {
            return Err(ApiError::new(
                Code::KeyNotActive,
                format!(
                    "key `{}` is {}, only ACTIVE keys sign",
                    key.key_id,
                    key.status.as_str()
                ),
            ));
        }
        let prepared = self.prepare(key, body, rec.request.clone(), rec.body_hash.clone())?;
        let client = self.auth.clients().get(owner).ok_or_else(|| {
            ApiError::forbidden(format!(
                "the requester `{owner}` is no longer a client; nothing was signed"
            ))
        })?;
        let ip = rec
            .client_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or(caller.ip);
        let requester = Requester::new(&client, ip, caller.now);
        let decided = self.decide(&requester, prepared, true)?;
        Ok((requester, decided))
    }

    fn deny_at_quorum(
        &self,
        requester: &Requester,
        owner: &str,
        d: Decided,
    ) -> ApiResult<(u16, Value)> {
        let request_id = d.prepared.body.request_id.as_str();
        let decision = &d.decision;
        let err = ApiError::new(
            Code::PolicyDenied,
            format!(
                "denied by policy at approval: {}",
                if decision.policies.is_empty() {
                    "no policy permits this request any more".to_string()
                } else {
                    decision.policies.join(", ")
                }
            ),
        )
        .with("policies", json!(decision.policies))
        .with("request_id", json!(request_id));
        let _ = self.requests.update(owner, request_id, |r| {
            r.state = State::Denied;
            r.outcome = Some((403, err.body()));
            Ok(())
        });
        self.audit.append(
            NewEntry::new("KEY_SIGN", AuditResult::Denied)
                .principal(&requester.name)
                .key_id(&d.prepared.key.key_id)
                .request_id(request_id)
                .client_ip(requester.ip.to_string())
                .details(json!({"at": "approval quorum", "policy": {
                    "decision": "DENY", "policies": decision.policies,
                    "errors": decision.errors}})),
        )?;
        Err(err)
    }

    /// The access key of the client named by `requester` (its access key or its name).
    pub(super) fn requester_key(&self, requester: &str) -> ApiResult<String> {
        let clients = self.auth.clients();
        if let Some(c) = clients.get(requester) {
            return Ok(c.access_key.clone());
        }
        clients
            .iter()
            .find(|c| c.name == requester)
            .map(|c| c.access_key.clone())
            .ok_or_else(|| {
                ApiError::new(
                    Code::RequestNotFound,
                    format!(
                        "no client `{requester}`: name the requester by client name or access key"
                    ),
                )
            })
    }

    /// The names of the clients with these access keys, for messages to approvers.
    pub(super) fn client_list(&self, keys: &[String]) -> String {
        keys.iter()
            .map(|k| {
                let name = self
                    .auth
                    .clients()
                    .get(k)
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| k.clone());
                format!("`{name}`")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whose request `request_id` an approval is for (the requester's access key).
    /// With `requester`, that client's request of that id. Without, the one client whose
    /// request of that id is pending approval: requests of that id in any other state
    /// are never candidates, and two pending ones are 409, naming their requesters.
    fn approval_target(&self, request_id: &str, requester: Option<&str>) -> ApiResult<String> {
        if let Some(q) = requester {
            let owner = self.requester_key(q)?;
            if self.requests.get(&owner, request_id)?.is_none() {
                return Err(ApiError::new(
                    Code::RequestNotFound,
                    format!("no request `{request_id}` from `{q}`"),
                ));
            }
            return Ok(owner);
        }
        let owners = self.requests.clients_of(request_id)?;
        let mut pending = Vec::new();
        for o in &owners {
            if let Some(r) = self.requests.get(o, request_id)?
                && r.state == State::PendingApproval
            {
                pending.push(o.clone());
            }
        }
        match (pending.as_slice(), owners.as_slice()) {
            ([one], _) => Ok(one.clone()),
            ([], [only]) => Ok(only.clone()),
            ([], []) => Err(ApiError::new(
                Code::RequestNotFound,
                format!("no request `{request_id}`"),
            )),
            ([], _) => Err(ApiError::new(
                Code::InvalidTransition,
                format!("request `{request_id}` is not pending approval"),
            )),
            _ => Err(ApiError::new(
                Code::RequestIdReused,
                format!(
                    "request id `{request_id}` is pending approval for more than one client ({}); name the requester: `?requester=<client name>`",
                    self.client_list(&pending)
                ),
            )),
        }
    }
}
