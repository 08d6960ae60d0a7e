//! The node's decision on one signing session (DESIGN §3): re-derive the payloads from the
//! raw data with its own plugins, refuse a digest it did not derive, decide the signed
//! policy bundle over the intent with its own clock and velocity figure, and check the
//! approver signatures when the decision needs them.

use crate::approval::{self, ApprovalError};
use crate::bundle::InForce;
use crate::canonical;
use crate::derive::{self, DeriveError, Derived, Input};
use crate::keys::Pins;
use custos_plugin_runtime::PluginRuntime;
use custos_plugin_sdk as sdk;
use custos_policy::velocity::VelocityKey;
use custos_policy::{ClientRef, Decision, DecisionRequest, RequestFacts, Verdict, WalletRef};
use custos_wire::SignRequest;
use std::collections::BTreeMap;

/// The key as the node holds it.
pub struct KeyFacts<'a> {
    pub key_id: &'a str,
    pub curve: sdk::Curve,
    /// Uncompressed secp256k1 or 32-byte ed25519 (the plugins' form).
    pub plugin_key: &'a [u8],
    /// Address kinds derived from the key by this node's plugins.
    pub addresses: &'a BTreeMap<String, String>,
}

/// A session the node may sign, and what it journals.
#[derive(Debug)]
pub struct Verified {
    pub derived: Derived,
    pub decision: Decision,
    pub bundle_version: u64,
    /// Approvers whose statements were checked (empty when none were needed).
    pub approvers: Vec<String>,
    pub request_sha256: String,
    /// sha256 of the canonical intent JSON.
    pub intent_sha256: String,
    /// What this request adds to the node's own velocity ledger (each key once).
    pub velocity: Vec<(VelocityKey, String)>,
}

/// Why a node refuses a session; the text names the reason.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the request does not derive on this node: {0}")]
    Derive(#[from] DeriveError),
    #[error(
        "the digest to sign is not payload {position} of the raw data (this node derived {derived} payload(s) from it)"
    )]
    NotDerived { position: u32, derived: usize },
    #[error("the node's velocity ledger cannot be read: {0}")]
    Velocity(String),
    #[error("policy bundle v{version} denies this request (policies: {policies}{errors})")]
    Denied {
        version: u64,
        policies: String,
        errors: String,
    },
    #[error("policy bundle v{version} holds this request for {needed} approval(s): {source}")]
    Approvals {
        version: u64,
        needed: u32,
        #[source]
        source: ApprovalError,
    },
}

/// Decides one session. `sent_24h` gives this node's own figure for a velocity key,
/// excluding this request (the caller reserves it afterwards).
// Each argument is a separate trust anchor or input the caller owns (plugins, bundle,
// approver pins, request, key, digest, ledger, clock); bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn check(
    rt: &PluginRuntime,
    bundle: &InForce,
    approvers: &Pins,
    req: &SignRequest,
    key: &KeyFacts<'_>,
    message: &[u8],
    sent_24h: &dyn Fn(&VelocityKey) -> Result<String, String>,
    now: i64,
) -> Result<Verified, Refusal> {
    if req.key_id != key.key_id {
        return Err(Refusal::Malformed(format!(
            "the request names key `{}`, the session key `{}`",
            req.key_id, key.key_id
        )));
    }
    let data = approval::data_value(&req.data).map_err(Refusal::Malformed)?;
    let request_sha256 = approval::request_sha256(
        &req.request_id,
        &req.key_id,
        &req.chain,
        req.network.as_deref(),
        &req.data_type,
        &data,
    );
    let derived = derive::derive(
        rt,
        &Input {
            key_id: key.key_id,
            chain: &req.chain,
            network: req.network.as_deref(),
            data_type: &req.data_type,
            data: &data,
            curve: key.curve,
            plugin_key: key.plugin_key,
            from: key
                .addresses
                .get(derive::address_key(&req.chain))
                .cloned()
                .unwrap_or_default(),
        },
    )?;
    let derived_ok = derived
        .payloads
        .get(req.position as usize)
        .is_some_and(|p| p.digest == message);
    if !derived_ok {
        return Err(Refusal::NotDerived {
            position: req.position,
            derived: derived.payloads.len(),
        });
    }
    let velocity = VelocityKey::entries(key.key_id, &derived.intent);
    let figures = custos_policy::velocity::figures(key.key_id, &derived.intent, sent_24h)
        .map_err(Refusal::Velocity)?;
    let addresses: Vec<(String, String)> = key
        .addresses
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let decision = custos_policy::evaluate(
        &bundle.snapshot,
        &DecisionRequest {
            principal: ClientRef {
                id: &req.requester.id,
                name: &req.requester.name,
                roles: &req.requester.roles,
            },
            action: derived.action,
            wallet: WalletRef {
                id: key.key_id,
                label: &req.wallet.label,
                tags: &req.wallet.tags,
                curve: key.curve.as_str(),
                addresses: &addresses,
                groups: &req.wallet.groups,
            },
            intent: &derived.intent,
            velocity: figures,
            facts: RequestFacts::at(req.requester.ip.clone(), now),
            operation: None,
        },
    );
    let version = bundle.version;
    let approvers_ok = match decision.verdict {
        Verdict::Allow => vec![],
        Verdict::Deny => {
            return Err(Refusal::Denied {
                version,
                policies: if decision.policies.is_empty() {
                    "none permits it".into()
                } else {
                    decision.policies.join(", ")
                },
                errors: if decision.errors.is_empty() {
                    String::new()
                } else {
                    format!("; errors: {}", decision.errors.join("; "))
                },
            });
        }
        Verdict::NeedsApproval(needed) => approval::check(
            approvers,
            &req.request_id,
            &req.key_id,
            &request_sha256,
            &req.requester.name,
            &req.approvals,
            needed,
        )
        .map_err(|source| Refusal::Approvals {
            version,
            needed,
            source,
        })?,
    };
    let intent_sha256 = canonical::sha256_hex(&derived.intent.to_json());
    Ok(Verified {
        derived,
        decision,
        bundle_version: version,
        approvers: approvers_ok,
        request_sha256,
        intent_sha256,
        velocity,
    })
}
