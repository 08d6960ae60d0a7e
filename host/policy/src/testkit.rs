//! The policy test kit behind `custos policy test`: case files hold a request, extra
//! entities and the expected decision with the deciding policy ids; each case runs
//! through the real engine with the real schema.
//!
//! Case file (JSON, one case per file, in `<policies>/tests/` by default):
//! ```json
//! {
//!   "description": "ETH exactly at the 10 ETH limit is allowed",
//!   "request": {
//!     "principal": {"id": "app-1", "name": "exchange", "roles": ["signer"]},
//!     "action": "sign_transaction",
//!     "wallet": {"id": "key-1", "label": "treasury", "tags": [], "groups": [],
//!                "curve": "SECP256K1", "addresses": {"evm": "0x…"}},
//!     "intent": { …the intent JSON of DESIGN §7… },
//!     "velocity": {"sent_24h": "0", "native_sent_24h": "0", "count_24h": "3"}
//!              or {"sent": [{"time": "…Z", "amount": "…"}], "count_24h": "3"},
//!     "operation": {"status": "FROZEN", …}   (administrative actions; then "intent"
//!                                              may be left out),
//!     "time": "2026-11-21T12:00:00Z",
//!     "client_ip": "10.0.0.5"
//!   },
//!   "entities": [ …extra Cedar entities, e.g. an address in an address list… ],
//!   "expect": {"decision": "NEEDS_APPROVAL", "approvals": 2,
//!              "policies": ["signer-transfer-over-limit-needs-approval"], "errors": false}
//! }
//! ```

use crate::facts::parse_utc;
use crate::velocity::{MemoryVelocity, VelocityKey, VelocityStore};
use crate::{
    Action, ClientRef, Decision, DecisionRequest, PolicyError, PolicySnapshot, RequestFacts,
    Velocity, Verdict, WalletRef, evaluate, evaluate_unsliced, load_dir,
};
use custos_plugin_sdk::Intent;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    description: String,
    request: CaseRequest,
    #[serde(default)]
    entities: Vec<Value>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    principal: CasePrincipal,
    action: String,
    wallet: CaseWallet,
    #[serde(default)]
    intent: Option<Value>,
    #[serde(default)]
    velocity: Option<CaseVelocity>,
    #[serde(default)]
    operation: Option<CaseOperation>,
    time: String,
    #[serde(default = "default_ip")]
    client_ip: String,
}

fn default_ip() -> String {
    "127.0.0.1".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePrincipal {
    id: String,
    #[serde(default)]
    name: String,
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseWallet {
    id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    curve: String,
    #[serde(default)]
    addresses: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseOperation {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    requester: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    curve: Option<String>,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    shard_count: Option<u32>,
    #[serde(default)]
    threshold: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseVelocity {
    /// Base units of the chain's native asset sent in the last 24 h (transfers and fee
    /// ceilings); defaults to `sent_24h` when the intent's asset is native, else 0.
    #[serde(default)]
    native_sent_24h: Option<String>,
    /// Signed requests from the wallet in the last 24 h.
    #[serde(default)]
    count_24h: Option<String>,
    /// Base units sent in the last 24 h, given directly…
    #[serde(default)]
    sent_24h: Option<String>,
    /// …or as the history of signed sends of the intent's asset from this wallet, run
    /// through the in-memory velocity store at the request time.
    #[serde(default)]
    sent: Vec<Sent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    time: String,
    amount: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    approvals: Option<u32>,
    policies: Vec<String>,
    #[serde(default)]
    errors: bool,
}

/// How one case went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The engine decided otherwise: what was expected and what came.
    Fail {
        expected: String,
        got: String,
    },
    /// The case file itself is wrong (unreadable, unknown key, bad intent, …).
    Invalid(String),
}

#[derive(Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub description: String,
    pub outcome: Outcome,
}

pub fn parse_action(s: &str) -> Result<Action, String> {
    Ok(match s {
        "generate_key" => Action::GenerateKey,
        "sign_transaction" => Action::SignTransaction,
        "sign_message" => Action::SignMessage,
        "sign_hash" => Action::SignHash,
        "set_status" => Action::SetStatus,
        "refresh_key" => Action::RefreshKey,
        "approve" => Action::Approve,
        "read_audit" => Action::ReadAudit,
        other => return Err(format!("unknown action `{other}`")),
    })
}

/// `ALLOW`, `DENY` or `NEEDS_APPROVAL(n)` with the policy ids, as printed.
pub fn describe(verdict: &Verdict, policies: &[String], errors: &[String]) -> String {
    let v = match verdict {
        Verdict::Allow => "ALLOW".to_string(),
        Verdict::Deny => "DENY".to_string(),
        Verdict::NeedsApproval(n) => format!("NEEDS_APPROVAL({n})"),
    };
    let mut s = format!("{v} by [{}]", policies.join(", "));
    if !errors.is_empty() {
        s.push_str(&format!(" with errors: {}", errors.join("; ")));
    }
    s
}

fn expected_verdict(e: &Expect) -> Result<Verdict, String> {
    match (e.decision.as_str(), e.approvals) {
        ("ALLOW", None) => Ok(Verdict::Allow),
        ("DENY", None) => Ok(Verdict::Deny),
        ("NEEDS_APPROVAL", Some(n)) => Ok(Verdict::NeedsApproval(n)),
        ("NEEDS_APPROVAL", None) => Err("expect.approvals is required with NEEDS_APPROVAL".into()),
        ("ALLOW" | "DENY", Some(_)) => Err("expect.approvals goes only with NEEDS_APPROVAL".into()),
        (other, _) => Err(format!(
            "expect.decision `{other}` is not ALLOW, DENY or NEEDS_APPROVAL"
        )),
    }
}

fn run_case(snap: &PolicySnapshot, text: &str) -> (String, Outcome) {
    let case: CaseFile = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            return (
                String::new(),
                Outcome::Invalid(format!("not a valid case: {e}")),
            );
        }
    };
    let desc = case.description.clone();
    match decide_case(snap, &case) {
        Err(e) => (desc, Outcome::Invalid(e)),
        Ok((expected, d)) => {
            let mut want = case.expect.policies.clone();
            want.sort();
            let mut got_ids = d.policies.clone();
            got_ids.sort();
            let ok = d.verdict == expected
                && got_ids == want
                && d.errors.is_empty() != case.expect.errors;
            let outcome = if ok {
                Outcome::Pass
            } else {
                let mut exp = describe(&expected, &want, &[]);
                if case.expect.errors {
                    exp.push_str(" with evaluation errors");
                }
                Outcome::Fail {
                    expected: exp,
                    got: describe(&d.verdict, &got_ids, &d.errors),
                }
            };
            (desc, outcome)
        }
    }
}

fn decide_case(snap: &PolicySnapshot, case: &CaseFile) -> Result<(Verdict, Decision), String> {
    let expected = expected_verdict(&case.expect)?;
    let r = &case.request;
    let action = parse_action(&r.action)?;
    let intent = match &r.intent {
        Some(v) => Intent::from_json(v)?,
        None if r.operation.is_some() => crate::no_intent(),
        None => return Err("request.intent is missing".into()),
    };
    let now = parse_utc(&r.time)?;
    let velocity = match &r.velocity {
        None => Velocity::default(),
        Some(v) => {
            let sent_24h = match (&v.sent_24h, v.sent.is_empty()) {
                (Some(s), true) => s.clone(),
                (None, true) => String::new(),
                (None, false) => {
                    let store = MemoryVelocity::new();
                    let key = VelocityKey::for_intent(&r.wallet.id, &intent)
                        .map(|(k, _)| k)
                        .ok_or("velocity.sent needs an intent that sends a single asset")?;
                    for s in &v.sent {
                        store
                            .record(&key, &s.amount, parse_utc(&s.time)?)
                            .map_err(|e| e.to_string())?;
                    }
                    store.sent_24h(&key, now).map_err(|e| e.to_string())?
                }
                (Some(_), false) => {
                    return Err("velocity: give sent_24h or sent, not both".into());
                }
            };
            let native_asset = VelocityKey::for_intent(&r.wallet.id, &intent)
                .is_some_and(|(k, _)| k.asset == "native");
            Velocity {
                native_sent_24h: match &v.native_sent_24h {
                    Some(n) => n.clone(),
                    None if native_asset => sent_24h.clone(),
                    None => String::new(),
                },
                sent_24h,
                count_24h: v.count_24h.clone().unwrap_or_default(),
            }
        }
    };
    let addresses: Vec<(String, String)> = r
        .wallet
        .addresses
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let with_entities;
    let snap = if case.entities.is_empty() {
        snap
    } else {
        with_entities = snap.with_entities(Value::Array(case.entities.clone()))?;
        &with_entities
    };
    let facts = RequestFacts::at(r.client_ip.clone(), now);
    let request = DecisionRequest {
        principal: ClientRef {
            id: &r.principal.id,
            name: &r.principal.name,
            roles: &r.principal.roles,
        },
        action,
        wallet: WalletRef {
            id: &r.wallet.id,
            label: &r.wallet.label,
            tags: &r.wallet.tags,
            curve: &r.wallet.curve,
            addresses: &addresses,
            groups: &r.wallet.groups,
        },
        intent: &intent,
        velocity,
        facts,
        operation: r.operation.as_ref().map(|o| crate::Operation {
            status: o.status.clone(),
            reason: o.reason.clone(),
            request_id: o.request_id.clone(),
            requester: o.requester.clone(),
            label: o.label.clone(),
            curve: o.curve.clone(),
            algorithm: o.algorithm.clone(),
            shard_count: o.shard_count,
            threshold: o.threshold,
        }),
    };
    let d = evaluate(snap, &request);
    // The engine evaluates only the policies whose scope can apply; every case also
    // checks that this gives the same answer as evaluating the whole set.
    let whole = evaluate_unsliced(snap, &request);
    if d != whole {
        return Err(format!(
            "internal: scope slicing changed the decision ({} vs {})",
            describe(&d.verdict, &d.policies, &d.errors),
            describe(&whole.verdict, &whole.policies, &whole.errors)
        ));
    }
    Ok((expected, d))
}

/// Loads the policy folder (strict validation) and runs every `*.json` case in
/// `cases_dir`, in file-name order. A policy folder that does not load is an error.
pub fn run(policy_dir: &Path, cases_dir: &Path) -> Result<Vec<CaseResult>, PolicyError> {
    let snap = load_dir(policy_dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir)
        .map_err(|e| PolicyError::Read {
            path: cases_dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|file| {
            let (description, outcome) = match std::fs::read_to_string(&file) {
                Ok(text) => run_case(&snap, &text),
                Err(e) => (String::new(), Outcome::Invalid(format!("cannot read: {e}"))),
            };
            CaseResult {
                file,
                description,
                outcome,
            }
        })
        .collect())
}
