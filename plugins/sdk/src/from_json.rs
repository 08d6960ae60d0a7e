//! Reading an intent back from its DESIGN §7 JSON form (the inverse of
//! [`Intent::to_json`]), for policy test cases written by hand. Strict: unknown keys,
//! wrong types and an `amount_units` that disagrees with `amount` are errors, so a typo
//! in a test case cannot silently test something else.

use crate::{
    Allowance, Asset, AssetKind, CallArg, ContractCall, Intent, IntentKind, Transfer, TypedData,
    TypedDomain, TypedField, amount,
};
use serde_json::{Map, Value};

type R<T> = Result<T, String>;

fn obj<'a>(v: &'a Value, what: &str, allowed: &[&str]) -> R<&'a Map<String, Value>> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))?;
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{what} has an unknown key `{k}` (known: {})",
            allowed.join(", ")
        ));
    }
    Ok(m)
}

fn string(m: &Map<String, Value>, key: &str, what: &str) -> R<String> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{what}.{key} must be a string")),
        None => Err(format!("{what}.{key} is missing")),
    }
}

fn opt_string(m: &Map<String, Value>, key: &str, what: &str) -> R<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{what}.{key} must be a string or null")),
    }
}

fn kind(s: &str) -> R<IntentKind> {
    Ok(match s {
        "transfer" => IntentKind::Transfer,
        "contract_call" => IntentKind::ContractCall,
        "message" => IntentKind::Message,
        "typed_data" => IntentKind::TypedData,
        "hash" => IntentKind::Hash,
        "allowance" => IntentKind::Allowance,
        other => {
            return Err(format!(
                "intent.kind `{other}` is not one of transfer, contract_call, message, typed_data, hash"
            ));
        }
    })
}

fn asset(v: Option<&Value>, aw: &str) -> R<Asset> {
    let a = obj(
        v.ok_or_else(|| format!("{aw} is missing"))?,
        aw,
        &["kind", "symbol", "contract", "decimals"],
    )?;
    let kind = match string(a, "kind", aw)?.as_str() {
        "native" => AssetKind::Native,
        "token" => AssetKind::Token,
        other => return Err(format!("{aw}.kind `{other}` is not native or token")),
    };
    let decimals = match a.get("decimals") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            d.as_u64()
                .filter(|d| *d <= 77)
                .ok_or_else(|| format!("{aw}.decimals must be an integer 0..=77"))?
                as u8,
        ),
    };
    Ok(Asset {
        kind,
        symbol: opt_string(a, "symbol", aw)?,
        contract: opt_string(a, "contract", aw)?,
        decimals,
    })
}

fn base_units(m: &Map<String, Value>, key: &str, what: &str) -> R<String> {
    let s = string(m, key, what)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what}.{key} must be a base-unit integer string, got `{s}`"
        ));
    }
    Ok(s)
}

fn allowance(v: &Value, i: usize) -> R<Allowance> {
    let what = format!("intent.allowances[{i}]");
    let m = obj(
        v,
        &what,
        &[
            "spender",
            "amount",
            "amount_units",
            "asset",
            "unlimited",
            "expiry",
        ],
    )?;
    Ok(Allowance {
        spender: string(m, "spender", &what)?,
        amount: base_units(m, "amount", &what)?,
        asset: asset(m.get("asset"), &format!("{what}.asset"))?,
        unlimited: match m.get("unlimited") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(format!("{what}.unlimited must be true or false")),
        },
        expiry: opt_string(m, "expiry", &what)?,
    })
}

fn transfer(v: &Value, i: usize) -> R<Transfer> {
    let what = format!("intent.transfers[{i}]");
    let m = obj(
        v,
        &what,
        &["to", "amount", "amount_units", "asset", "is_change"],
    )?;
    let amount_s = base_units(m, "amount", &what)?;
    let asset = asset(m.get("asset"), &format!("{what}.asset"))?;
    let decimals = asset.decimals;
    if let Some(units) = opt_string(m, "amount_units", &what)? {
        let expected = decimals.and_then(|d| amount::base_to_units(&amount_s, d));
        if expected.as_deref() != Some(units.as_str()) {
            return Err(format!(
                "{what}.amount_units `{units}` does not match amount `{amount_s}` with {} decimals (it would be {}); leave it out or fix it",
                decimals.map_or("unknown".into(), |d| d.to_string()),
                expected.unwrap_or_else(|| "null".into())
            ));
        }
    }
    let is_change = match m.get("is_change") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(format!("{what}.is_change must be true or false")),
    };
    Ok(Transfer {
        to: string(m, "to", &what)?,
        amount: amount_s,
        asset,
        is_change,
    })
}

fn call(v: &Value) -> R<ContractCall> {
    let m = obj(v, "intent.call", &["to", "selector", "method", "args"])?;
    let mut args = Vec::new();
    match m.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Object(a)) => {
            for (k, v) in a {
                let value = v
                    .as_str()
                    .ok_or_else(|| format!("intent.call.args.{k} must be a string"))?;
                args.push(CallArg {
                    name: k.clone(),
                    ty: String::new(),
                    value: value.to_string(),
                });
            }
        }
        Some(_) => return Err("intent.call.args must be an object".into()),
    }
    Ok(ContractCall {
        to: string(m, "to", "intent.call")?,
        selector: string(m, "selector", "intent.call")?,
        method: opt_string(m, "method", "intent.call")?,
        args,
    })
}

/// Flattens nested typed-data values into leaves (`a.b[0].c`), the form plugins report.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<TypedField>) -> R<()> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, child, out)?;
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), child, out)?;
            }
        }
        Value::String(s) => out.push(TypedField {
            path: prefix.to_string(),
            ty: String::new(),
            value: s.clone(),
        }),
        _ => {
            return Err(format!(
                "intent.typed_data.message `{prefix}` must be a string (values are strings in the intent)"
            ));
        }
    }
    Ok(())
}

fn typed(v: &Value) -> R<TypedData> {
    let m = obj(
        v,
        "intent.typed_data",
        &["domain", "primary_type", "message"],
    )?;
    let d = match m.get("domain") {
        None | Some(Value::Null) => TypedDomain::default(),
        Some(d) => {
            let w = "intent.typed_data.domain";
            let d = obj(
                d,
                w,
                &["name", "version", "chainId", "verifyingContract", "salt"],
            )?;
            TypedDomain {
                name: opt_string(d, "name", w)?,
                version: opt_string(d, "version", w)?,
                chain_id: opt_string(d, "chainId", w)?,
                verifying_contract: opt_string(d, "verifyingContract", w)?,
                salt: opt_string(d, "salt", w)?,
            }
        }
    };
    let mut message = Vec::new();
    if let Some(msg) = m.get("message") {
        flatten("", msg, &mut message)?;
    }
    Ok(TypedData {
        domain: d,
        primary_type: string(m, "primary_type", "intent.typed_data")?,
        message,
    })
}

impl Intent {
    /// Reads the JSON form [`Intent::to_json`] writes. Contract-call argument types and
    /// typed-data field types are not part of that form and come back empty.
    pub fn from_json(v: &Value) -> Result<Intent, String> {
        let m = obj(
            v,
            "intent",
            &[
                "chain",
                "network",
                "kind",
                "from",
                "transfers",
                "call",
                "fee",
                "nonce",
                "typed_data",
                "extra",
                "allowances",
                "network_bound",
            ],
        )?;
        let transfers = match m.get("transfers") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, t)| transfer(t, i))
                .collect::<R<_>>()?,
            Some(_) => return Err("intent.transfers must be a list".into()),
        };
        let (fee_max, fee_asset) = match m.get("fee") {
            None | Some(Value::Null) => (None, None),
            Some(f) => {
                let f = obj(f, "intent.fee", &["max_amount", "max_units", "asset"])?;
                let a = match f.get("asset") {
                    None | Some(Value::Null) => None,
                    Some(a) => Some(asset(Some(a), "intent.fee.asset")?),
                };
                (opt_string(f, "max_amount", "intent.fee")?, a)
            }
        };
        let allowances = match m.get("allowances") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, t)| allowance(t, i))
                .collect::<R<_>>()?,
            Some(_) => return Err("intent.allowances must be a list".into()),
        };
        let network_bound = match m.get("network_bound") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("intent.network_bound must be true or false".into()),
        };
        let mut extra = Vec::new();
        match m.get("extra") {
            None | Some(Value::Null) => {}
            Some(Value::Object(e)) => {
                for (k, v) in e {
                    let s = v
                        .as_str()
                        .ok_or_else(|| format!("intent.extra.{k} must be a string"))?;
                    extra.push((k.clone(), s.to_string()));
                }
            }
            Some(_) => return Err("intent.extra must be an object".into()),
        }
        Ok(Intent {
            chain: string(m, "chain", "intent")?,
            network: string(m, "network", "intent")?,
            kind: kind(&string(m, "kind", "intent")?)?,
            from: string(m, "from", "intent")?,
            transfers,
            call: match m.get("call") {
                None | Some(Value::Null) => None,
                Some(c) => Some(call(c)?),
            },
            fee_max,
            fee_asset,
            allowances,
            network_bound,
            nonce: opt_string(m, "nonce", "intent")?,
            typed_data: match m.get("typed_data") {
                None | Some(Value::Null) => None,
                Some(t) => Some(typed(t)?),
            },
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Intent {
        Intent {
            chain: "evm".into(),
            network: "1".into(),
            kind: IntentKind::Transfer,
            from: "0xabc".into(),
            transfers: vec![Transfer {
                to: "0xdef".into(),
                amount: "1000000000000000001".into(),
                asset: Asset::native("ETH", 18),
                is_change: false,
            }],
            call: None,
            fee_max: Some("21000".into()),
            fee_asset: None,
            allowances: vec![],
            network_bound: false,
            nonce: Some("9".into()),
            typed_data: Some(TypedData {
                domain: TypedDomain {
                    name: Some("Mail".into()),
                    chain_id: Some("1".into()),
                    ..Default::default()
                },
                primary_type: "Mail".into(),
                message: vec![
                    TypedField {
                        path: "from.name".into(),
                        ty: String::new(),
                        value: "Cow".into(),
                    },
                    TypedField {
                        path: "to[0]".into(),
                        ty: String::new(),
                        value: "Bob".into(),
                    },
                ],
            }),
            extra: vec![("chain_id".into(), "1".into())],
        }
    }

    #[test]
    fn round_trips_through_the_json_form() {
        let i = sample();
        assert_eq!(Intent::from_json(&i.to_json()).unwrap(), i);
    }

    #[test]
    fn refuses_unknown_keys_and_inconsistent_units() {
        let mut v = sample().to_json();
        v["transfers"][0]["amount_units"] = json!("1.0");
        let e = Intent::from_json(&v).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let mut v = sample().to_json();
        v["tranfers"] = json!([]);
        let e = Intent::from_json(&v).unwrap_err();
        assert!(e.contains("unknown key `tranfers`"), "{e}");
        let mut v = sample().to_json();
        v["transfers"][0]["amount"] = json!("1.5");
        assert!(Intent::from_json(&v).is_err());
    }
}
