//! Second stage: the policy decides for the requester, over the intent and the wallet's
//! 24 h figure; an ALLOW also reserves the transfer in the velocity store, under the
//! wallet's lock, so concurrent requests see each other.

use super::Requester;
use super::prepare::Prepared;
use crate::error::{ApiError, ApiResult};
use crate::service::Service;
use custos_policy::velocity::VelocityKey;
use custos_policy::{ClientRef, Decision, DecisionRequest, RequestFacts, Verdict, WalletRef};
use serde_json::Value;

/// A prepared request with its decision.
pub(crate) struct Decided {
    pub prepared: Prepared,
    pub decision: Decision,
    /// The `policy` block of the answer (and of the request record).
    pub policy: Value,
    /// The velocity entry reserved for this request, released if it does not sign.
    pub reservation: Option<Vec<Vec<u8>>>,
    /// Signed approval statements, sent to the nodes with the request.
    pub approvals: Vec<custos_wire::ApprovalSignature>,
}

impl Service {
    /// Decides `p` for `requester`; with `reserve`, an ALLOW reserves its amount.
    pub(crate) fn decide(
        &self,
        requester: &Requester,
        p: Prepared,
        reserve: bool,
    ) -> ApiResult<Decided> {
        let key = &p.key;
        let lock = self.wallet_lock(&key.key_id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let velocity_off = self
            .host_velocity_off
            .load(std::sync::atomic::Ordering::Relaxed);
        let velocity = if velocity_off {
            custos_policy::Velocity::default()
        } else {
            custos_policy::velocity::velocity_for(
                &self.velocity,
                &key.key_id,
                &p.intent,
                requester.now,
            )
            .map_err(|e| ApiError::internal(format!("{e}; nothing was signed")))?
        };
        let tags = key.policy_tags();
        let groups = key.groups();
        let addresses: Vec<(String, String)> = key
            .addresses
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let decision = self.policy.evaluate(&DecisionRequest {
            principal: ClientRef {
                id: &requester.access_key,
                name: &requester.name,
                roles: &requester.roles,
            },
            action: p.action,
            wallet: WalletRef {
                id: &key.key_id,
                label: &key.label,
                tags: &tags,
                curve: key.format.curve.as_str(),
                addresses: &addresses,
                groups: &groups,
            },
            intent: &p.intent,
            velocity,
            facts: RequestFacts::at(requester.ip.to_string(), requester.now),
            operation: None,
        });
        let reservation = if reserve && !velocity_off && decision.verdict == Verdict::Allow {
            self.reserve(&p, requester.now)?
        } else {
            None
        };
        Ok(Decided {
            policy: super::policy_block(&decision),
            prepared: p,
            decision,
            reservation,
            approvals: vec![],
        })
    }

    /// Records what the request adds to the velocity figures (its asset, the native asset
    /// for its fee, the request count) and returns the entries, to release them if the
    /// request does not sign.
    pub(crate) fn reserve(&self, p: &Prepared, now: i64) -> ApiResult<Option<Vec<Vec<u8>>>> {
        let mut taken = Vec::new();
        for (vkey, amount) in VelocityKey::entries(&p.key.key_id, &p.intent) {
            match self.velocity.record_entry(&vkey, &amount, now) {
                Ok(entry) => taken.push(entry),
                Err(e) => {
                    self.release(Some(taken));
                    return Err(ApiError::internal(format!("{e}; nothing was signed")));
                }
            }
        }
        Ok(Some(taken))
    }

    /// Gives back a reservation whose request did not sign.
    pub(crate) fn release(&self, reservation: Option<Vec<Vec<u8>>>) {
        for r in reservation.into_iter().flatten() {
            if let Err(e) = self.velocity.release(&r) {
                tracing::error!(error = %e, "could not release a velocity reservation; the 24 h figure over-counts until it expires");
            }
        }
    }
}
