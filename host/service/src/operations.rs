//! Cedar decides the administrative actions too (DESIGN §8): `generate_key`,
//! `set_status`, `refresh_key` and `approve`, with what the request carries
//! (`context.operation`) and the wallet it is about (for `generate_key` the wallet it would
//! make). The role checks in code stay in front: the policy can narrow them, never widen.
//!
//! Only ALLOW lets the action go on: a DENY (a `forbid`, or no `permit`) is 403
//! `POLICY_DENIED` naming the deciding policies, audited under the action's operation as
//! DENIED; a permit asking for approvals is a DENY too, as these actions take none.

use crate::audit::{AuditResult, NewEntry};
use crate::error::{ApiError, ApiResult, Code};
use crate::registry::KeyRecord;
use crate::service::{Caller, Service};
use custos_plugin_sdk::Intent;
use custos_policy::{
    Action, ClientRef, DecisionRequest, Operation, RequestFacts, Velocity, Verdict, WalletRef,
};
use serde_json::json;

/// The wallet an administrative action is about, as policies see it.
pub(crate) struct WalletView {
    pub id: String,
    pub label: String,
    pub tags: Vec<String>,
    pub groups: Vec<String>,
    pub curve: String,
    pub addresses: Vec<(String, String)>,
}

impl WalletView {
    pub fn of(key: &KeyRecord) -> Self {
        Self {
            id: key.key_id.clone(),
            label: key.label.clone(),
            tags: key.policy_tags(),
            groups: key.groups(),
            curve: key.format.curve.as_str().to_string(),
            addresses: key
                .addresses
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// What the decision is about, for the answer and the DENIED audit entry.
pub(crate) struct Asked<'a> {
    pub action: Action,
    /// The audit operation a refusal is written under (`KEY_GENERATE`, `STATUS_CHANGE`, …).
    pub audit_op: &'a str,
    pub request_id: Option<&'a str>,
}

impl Service {
    /// Decides `asked` for the caller over `wallet`; Ok only for ALLOW.
    pub(crate) fn decide_operation(
        &self,
        caller: &Caller,
        asked: Asked<'_>,
        wallet: &WalletView,
        intent: &Intent,
        operation: Operation,
    ) -> ApiResult<()> {
        let roles = caller.client.role_names();
        let decision = self.policy.evaluate(&DecisionRequest {
            principal: ClientRef {
                id: &caller.client.access_key,
                name: &caller.client.name,
                roles: &roles,
            },
            action: asked.action,
            wallet: WalletRef {
                id: &wallet.id,
                label: &wallet.label,
                tags: &wallet.tags,
                curve: &wallet.curve,
                addresses: &wallet.addresses,
                groups: &wallet.groups,
            },
            intent,
            velocity: Velocity::default(),
            facts: RequestFacts::at(caller.ip.to_string(), caller.now),
            operation: Some(operation),
        });
        let verdict = match &decision.verdict {
            Verdict::Allow => return Ok(()),
            Verdict::Deny => "DENY",
            Verdict::NeedsApproval(_) => "NEEDS_APPROVAL",
        };
        let action = asked.action.name();
        let mut msg = match (&decision.verdict, decision.policies.is_empty()) {
            (Verdict::NeedsApproval(_), _) => format!(
                "denied by policy: {} asks for approvals, which `{action}` does not take",
                decision.policies.join(", ")
            ),
            (_, true) => format!("denied by policy: no policy permits `{action}` here"),
            (_, false) => format!("denied by policy: {}", decision.policies.join(", ")),
        };
        if !decision.errors.is_empty() {
            msg.push_str(&format!(
                "; evaluation errors: {}",
                decision.errors.join("; ")
            ));
        }
        let mut entry = NewEntry::new(asked.audit_op, AuditResult::Denied)
            .principal(&caller.client.name)
            .client_ip(caller.ip.to_string())
            .details(json!({"action": action, "policy": {"decision": verdict,
                "policies": decision.policies, "errors": decision.errors}}));
        if !wallet.id.is_empty() {
            entry = entry.key_id(&wallet.id);
        }
        if let Some(r) = asked.request_id {
            entry = entry.request_id(r);
        }
        self.audit.append(entry)?;
        Err(ApiError::new(Code::PolicyDenied, msg).with("policies", json!(decision.policies)))
    }
}
