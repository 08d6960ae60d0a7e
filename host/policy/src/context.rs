//! Building the Cedar request (entities + context) from an intent and host facts.

use crate::amount::{self, Units};
use cedar_policy::{Context, Entities, Entity, EntityUid, Request, Schema};
use custos_plugin_sdk::{AssetKind, Intent};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    GenerateKey,
    SignTransaction,
    SignMessage,
    SignHash,
    SetStatus,
    RefreshKey,
    Approve,
    ReadAudit,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::GenerateKey => "generate_key",
            Action::SignTransaction => "sign_transaction",
            Action::SignMessage => "sign_message",
            Action::SignHash => "sign_hash",
            Action::SetStatus => "set_status",
            Action::RefreshKey => "refresh_key",
            Action::Approve => "approve",
            Action::ReadAudit => "read_audit",
        }
    }
}

pub struct ClientRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub roles: &'a [String],
}

pub struct WalletRef<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub tags: &'a [String],
    pub curve: &'a str,
    /// (chain key, address), e.g. ("evm", "0x…").
    pub addresses: &'a [(String, String)],
    pub groups: &'a [String],
}

/// Base units of the request's asset sent from this wallet in the last 24 h, change
/// excluded (the service keeps this durably).
#[derive(Clone, Debug, Default)]
pub struct Velocity {
    pub sent_24h: String,
}

pub struct RequestFacts {
    pub client_ip: String,
    /// RFC 3339, UTC (`2026-11-21T12:00:00Z`).
    pub time: String,
    pub weekday: u8,
    pub hour: u8,
}

pub struct DecisionRequest<'a> {
    pub principal: ClientRef<'a>,
    pub action: Action,
    pub wallet: WalletRef<'a>,
    pub intent: &'a Intent,
    pub velocity: Velocity,
    pub facts: RequestFacts,
}

pub struct Built {
    pub request: Request,
    pub entities: Entities,
}

fn uid(ty: &str, id: &str) -> Value {
    json!({"type": format!("Custos::{ty}"), "id": id})
}

fn dec(s: &str) -> Value {
    json!({"__extn": {"fn": "decimal", "arg": s}})
}

fn max_units() -> Units {
    amount::to_units(&"9".repeat(40), 0).unwrap_or(Units {
        decimal: "922337203685477.5807".into(),
        saturated: true,
    })
}

/// Sum of two decimal digit strings.
fn add(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::new();
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let x = if i > 0 {
            i -= 1;
            a[i] - b'0'
        } else {
            0
        };
        let y = if j > 0 {
            j -= 1;
            b[j] - b'0'
        } else {
            0
        };
        let s = x + y + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    out.reverse();
    let s = String::from_utf8(out).unwrap_or_default();
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub fn build(
    schema: &Schema,
    req: &DecisionRequest<'_>,
    static_entities: &[Entity],
    address_lists: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Built, String> {
    let i = req.intent;
    let moving: Vec<_> = i.transfers.iter().filter(|t| !t.is_change).collect();
    let asset_key = |t: &custos_plugin_sdk::Transfer| match t.asset.kind {
        AssetKind::Native => "native".to_string(),
        AssetKind::Token => t.asset.contract.clone().unwrap_or_default(),
    };
    let keys: BTreeSet<String> = moving.iter().map(|t| asset_key(t)).collect();
    let single = keys.len() <= 1;
    let decimals = moving.first().and_then(|t| t.asset.decimals);
    let known = single
        && moving
            .iter()
            .all(|t| t.asset.decimals == decimals && decimals.is_some());
    let mut sum = "0".to_string();
    for t in &moving {
        if !is_digits(&t.amount) {
            return Err(format!(
                "transfer amount `{}` is not a decimal integer",
                t.amount
            ));
        }
        sum = add(&sum, &t.amount);
    }
    let sent = if req.velocity.sent_24h.is_empty() {
        "0"
    } else {
        req.velocity.sent_24h.as_str()
    };
    if !is_digits(sent) {
        return Err(format!("velocity `{sent}` is not a decimal integer"));
    }
    let (units, units_24h, with_this) = match (moving.is_empty(), known, decimals) {
        (true, _, _) => {
            let z = amount::to_units("0", 0).map_err(|e| e.to_string())?;
            (z.clone(), z.clone(), z)
        }
        (false, true, Some(d)) => (
            amount::to_units(&sum, d).map_err(|e| e.to_string())?,
            amount::to_units(sent, d).map_err(|e| e.to_string())?,
            amount::to_units(&add(sent, &sum), d).map_err(|e| e.to_string())?,
        ),
        // Mixed assets or unknown decimals: the size is unknown, so it counts as the most.
        _ => (max_units(), max_units(), max_units()),
    };
    let symbol = if single {
        moving
            .first()
            .and_then(|t| t.asset.symbol.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut saturated = units.saturated || with_this.saturated;
    let transfers: Vec<Value> = i
        .transfers
        .iter()
        .map(|t| {
            let u = match t.asset.decimals {
                Some(d) => amount::to_units(&t.amount, d).unwrap_or_else(|_| max_units()),
                None => max_units(),
            };
            if t.asset.decimals.is_some() && u.saturated {
                saturated = true;
            }
            let mut asset = json!({"kind": match t.asset.kind { AssetKind::Native => "native", AssetKind::Token => "token" }});
            if let Some(s) = &t.asset.symbol { asset["symbol"] = json!(s); }
            if let Some(c) = &t.asset.contract { asset["contract"] = json!(c); }
            if let Some(d) = t.asset.decimals { asset["decimals"] = json!(d); }
            json!({
                "to": t.to, "amount": t.amount, "amount_units": dec(&u.decimal),
                "saturated": u.saturated, "decimals_known": t.asset.decimals.is_some(),
                "asset": asset, "is_change": t.is_change,
            })
        })
        .collect();
    // The lists that contain every (non-change) recipient.
    let recipients: BTreeSet<String> = moving
        .iter()
        .map(|t| format!("{}:{}", i.chain, t.to))
        .collect();
    let mut lists_of_all: Option<BTreeSet<String>> = None;
    for r in &recipients {
        let parents = address_lists.get(r).cloned().unwrap_or_default();
        lists_of_all = Some(match lists_of_all {
            None => parents,
            Some(acc) => acc.intersection(&parents).cloned().collect(),
        });
    }
    let recipients_in: Vec<Value> = if recipients.is_empty() {
        vec![]
    } else {
        lists_of_all
            .unwrap_or_default()
            .iter()
            .map(|l| uid("AddressList", l))
            .collect()
    };
    let mut ctx = json!({
        "chain": i.chain, "network": i.network, "kind": i.kind.as_str(), "from": i.from,
        "transfers": transfers,
        "transfer_count": moving.len(),
        "single_asset": single,
        "asset": if single { keys.iter().next().cloned().unwrap_or_default() } else { "mixed".into() },
        "asset_symbol": symbol,
        "amount_units": dec(&units.decimal),
        "amount_known": known,
        "saturated": saturated,
        "recipients_in": recipients_in,
        "velocity": {"units_24h": dec(&units_24h.decimal), "units_24h_with_this": dec(&with_this.decimal)},
        "request": {
            "client_ip": {"__extn": {"fn": "ip", "arg": req.facts.client_ip}},
            "time": {"__extn": {"fn": "datetime", "arg": req.facts.time}},
            "weekday": req.facts.weekday, "hour": req.facts.hour,
        },
    });
    if let Some(c) = &i.call {
        let mut call = json!({"to": c.to, "selector": c.selector});
        if let Some(m) = &c.method {
            call["method"] = json!(m);
        }
        ctx["call"] = call;
    }
    if let Some(f) = &i.fee_max {
        ctx["fee_max"] = json!(f);
    }
    if let Some(t) = &i.typed_data {
        let mut domain = json!({});
        for (k, v) in [
            ("name", &t.domain.name),
            ("version", &t.domain.version),
            ("chain_id", &t.domain.chain_id),
            ("verifying_contract", &t.domain.verifying_contract),
        ] {
            if let Some(v) = v {
                domain[k] = json!(v);
            }
        }
        ctx["typed_data"] = json!({
            "primary_type": t.primary_type, "domain": domain,
            "fields": t.message.iter().map(|f| json!({"path": f.path, "type": f.ty, "value": f.value})).collect::<Vec<_>>(),
        });
    }

    let w = &req.wallet;
    let mut addresses = json!({});
    for (k, v) in w.addresses {
        addresses[k] = json!(v);
    }
    let mut dynamic = vec![
        json!({"uid": uid("Client", req.principal.id), "attrs": {"name": req.principal.name},
               "parents": req.principal.roles.iter().map(|r| uid("Role", r)).collect::<Vec<_>>()}),
        json!({"uid": uid("Wallet", w.id), "attrs": {"label": w.label, "tags": w.tags, "curve": w.curve, "addresses": addresses},
               "parents": w.groups.iter().map(|g| uid("WalletGroup", g)).collect::<Vec<_>>()}),
    ];
    for r in req.principal.roles {
        dynamic.push(json!({"uid": uid("Role", r), "attrs": {}, "parents": []}));
    }
    for g in w.groups {
        dynamic.push(json!({"uid": uid("WalletGroup", g), "attrs": {}, "parents": []}));
    }
    let dynamic = Entities::from_json_value(Value::Array(dynamic), Some(schema))
        .map_err(|e| crate::one_line(&e))?;
    let entities =
        Entities::from_entities(static_entities.iter().cloned().chain(dynamic), Some(schema))
            .map_err(|e| crate::one_line(&e))?;
    let parse_uid = |ty: &str, id: &str| -> Result<EntityUid, String> {
        EntityUid::from_json(uid(ty, id)).map_err(|e| crate::one_line(&e))
    };
    let principal = parse_uid("Client", req.principal.id)?;
    let action = parse_uid("Action", req.action.name())?;
    let resource = parse_uid("Wallet", w.id)?;
    let context =
        Context::from_json_value(ctx, Some((schema, &action))).map_err(|e| crate::one_line(&e))?;
    let request = Request::new(principal, action, resource, context, Some(schema))
        .map_err(|e| crate::one_line(&e))?;
    Ok(Built { request, entities })
}
