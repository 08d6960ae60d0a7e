//! EIP-191 personal messages and EIP-712 typed data.

use alloy_dyn_abi::{DynSolValue, TypedData as AlloyTypedData};
use alloy_primitives::{Address, U256, hex, keccak256};
use custos_plugin_sdk::{
    Allowance, Intent, IntentKind, ParsedMessage, PluginError, PluginResult, SignatureScheme,
    SigningPayload, TypedData, TypedDomain, TypedField, abi, json_numbers,
};

/// Most leaves a typed-data message may have: policy and audit see every leaf, so an
/// unbounded message is refused rather than truncated.
const MAX_TYPED_FIELDS: usize = 4096;

fn message_intent(kind: IntentKind, network: String, from: String) -> Intent {
    Intent {
        chain: crate::PLUGIN_NAME.into(),
        network,
        kind,
        from,
        transfers: vec![],
        call: None,
        fee_max: None,
        fee_asset: None,
        allowances: vec![],
        network_bound: false,
        nonce: None,
        typed_data: None,
        extra: vec![],
    }
}

/// EIP-191 version 0x45: keccak256("\x19Ethereum Signed Message:\n" || len || message).
pub fn personal_digest(message: &[u8]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(message.len() + 32);
    buf.extend_from_slice(b"\x19Ethereum Signed Message:\n");
    buf.extend_from_slice(message.len().to_string().as_bytes());
    buf.extend_from_slice(message);
    keccak256(&buf).0
}

pub fn personal(
    message: &[u8],
    network: Option<&str>,
    from: String,
) -> PluginResult<ParsedMessage> {
    if let Some(n) = network {
        crate::parse_network(n)?;
    }
    let mut intent = message_intent(
        IntentKind::Message,
        network.unwrap_or_default().to_string(),
        from,
    );
    intent
        .extra
        .push(("message_len".into(), message.len().to_string()));
    match std::str::from_utf8(message) {
        Ok(text) => intent.extra.push(("message_text".into(), text.to_string())),
        Err(_) => intent
            .extra
            .push(("message_hex".into(), format!("0x{}", hex::encode(message)))),
    }
    Ok(ParsedMessage {
        intent,
        payload: SigningPayload {
            index: 0,
            scheme: SignatureScheme::EcdsaSecp256k1,
            digest: personal_digest(message).to_vec(),
        },
    })
}

fn flatten(value: &DynSolValue, path: &str, out: &mut Vec<TypedField>) -> PluginResult<()> {
    let leaf = |out: &mut Vec<TypedField>, ty: String, v: String| {
        out.push(TypedField {
            path: path.to_string(),
            ty,
            value: v,
        })
    };
    if out.len() >= MAX_TYPED_FIELDS {
        return Err(PluginError::parse(format!(
            "typed data has more than {MAX_TYPED_FIELDS} fields"
        )));
    }
    let ty = value
        .sol_type_name()
        .map(|c| c.into_owned())
        .unwrap_or_default();
    match value {
        DynSolValue::CustomStruct {
            prop_names, tuple, ..
        } => {
            for (name, v) in prop_names.iter().zip(tuple) {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                flatten(v, &p, out)?;
            }
        }
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &format!("{path}[{i}]"), out)?;
            }
        }
        DynSolValue::Address(a) => leaf(out, ty, a.to_checksum(None)),
        DynSolValue::Bool(b) => leaf(out, ty, b.to_string()),
        DynSolValue::Uint(u, _) => leaf(out, ty, u.to_string()),
        DynSolValue::Int(i, _) => leaf(out, ty, i.to_string()),
        DynSolValue::String(s) => leaf(out, ty, s.clone()),
        DynSolValue::Bytes(b) => leaf(out, ty, format!("0x{}", hex::encode(b))),
        DynSolValue::FixedBytes(w, size) => leaf(
            out,
            ty,
            format!("0x{}", hex::encode(w.get(..*size).unwrap_or_default())),
        ),
        DynSolValue::Function(f) => leaf(out, ty, format!("0x{}", hex::encode(f.as_slice()))),
    }
    Ok(())
}

pub fn typed(json: &str, network: Option<&str>, from: String) -> PluginResult<ParsedMessage> {
    // serde_json reads an integer literal beyond 64 bits as a float, which EIP-712 then
    // refuses (or, worse, would round): such literals become exact decimal strings first.
    let json = json_numbers::big_integers_as_strings(json);
    let td: AlloyTypedData = serde_json::from_str(&json)
        .map_err(|e| PluginError::parse(format!("typed data is not valid eip-712 json: {e}")))?;
    let domain = td.domain();
    let chain_id = domain.chain_id;
    if let (Some(n), Some(id)) = (network, chain_id) {
        let want = crate::parse_network(n)?;
        if U256::from(want) != id {
            return Err(PluginError::network(format!(
                "network `{n}` does not match the typed data's domain chainId `{id}`"
            )));
        }
    } else if let Some(n) = network {
        crate::parse_network(n)?;
    }
    let digest = td
        .eip712_signing_hash()
        .map_err(|e| PluginError::parse(format!("typed data does not hash: {e}")))?;
    let mut message = Vec::new();
    let mut allowances = Vec::new();
    if td.primary_type != "EIP712Domain" {
        let value = td.coerce().map_err(|e| {
            PluginError::parse(format!("typed data message does not match its types: {e}"))
        })?;
        flatten(&value, "", &mut message)?;
        // Known tokens are looked up on the chain the signature is bound to, else the
        // one the caller named.
        let token_chain = chain_id
            .and_then(|c| u64::try_from(c).ok())
            .or_else(|| network.and_then(|n| crate::parse_network(n).ok()))
            .unwrap_or(0);
        allowances = permit_allowances(&value, domain.verifying_contract, token_chain);
    }
    let typed_domain = TypedDomain {
        name: domain.name.as_ref().map(|s| s.to_string()),
        version: domain.version.as_ref().map(|s| s.to_string()),
        chain_id: chain_id.map(|c| c.to_string()),
        verifying_contract: domain.verifying_contract.map(|a| a.to_checksum(None)),
        salt: domain.salt.map(|s| format!("0x{}", hex::encode(s))),
    };
    let net = match (network, chain_id) {
        (Some(n), _) => n.to_string(),
        (None, Some(id)) => id.to_string(),
        (None, None) => String::new(),
    };
    let kind = if allowances.is_empty() {
        IntentKind::TypedData
    } else {
        IntentKind::Allowance
    };
    let mut intent = message_intent(kind, net, from);
    intent.allowances = allowances;
    // The signature is bound to a chain only when the domain names one.
    intent.network_bound = chain_id.is_some();
    intent.typed_data = Some(TypedData {
        domain: typed_domain,
        primary_type: td.primary_type.clone(),
        message,
    });
    Ok(ParsedMessage {
        intent,
        payload: SigningPayload {
            index: 0,
            scheme: SignatureScheme::EcdsaSecp256k1,
            digest: digest.to_vec(),
        },
    })
}

/// The type a permit field must have, for [`fields`].
#[derive(Clone, Copy)]
enum Ty {
    Address,
    Uint(usize),
    Bool,
    /// A struct of this name.
    Struct(&'static str),
    /// An array of structs of this name.
    StructArray(&'static str),
    /// Anything (a Permit2 witness).
    Any,
}

fn has_type(v: &DynSolValue, ty: Ty) -> bool {
    match (ty, v) {
        (Ty::Address, DynSolValue::Address(_)) | (Ty::Bool, DynSolValue::Bool(_)) => true,
        (Ty::Uint(bits), DynSolValue::Uint(_, b)) => *b == bits,
        (Ty::Struct(name), DynSolValue::CustomStruct { name: n, .. }) => n == name,
        (Ty::StructArray(name), DynSolValue::Array(items)) => items
            .iter()
            .all(|i| matches!(i, DynSolValue::CustomStruct { name: n, .. } if n == name)),
        (Ty::Any, _) => true,
        _ => false,
    }
}

/// The fields of `v` in the order of `want` when `v` is the struct `name` with exactly
/// the fields `want` (names and types, in any order) and nothing else; None otherwise.
/// Strict on purpose: a look-alike type (no spender, another amount type, an extra
/// field) is not a permit any token or Permit2 accepts, and is not read as one.
fn fields<'a>(v: &'a DynSolValue, name: &str, want: &[(&str, Ty)]) -> Option<Vec<&'a DynSolValue>> {
    let DynSolValue::CustomStruct {
        name: n,
        prop_names,
        tuple,
    } = v
    else {
        return None;
    };
    if n != name || prop_names.len() != want.len() || tuple.len() != want.len() {
        return None;
    }
    want.iter()
        .map(|(field, ty)| {
            let i = prop_names.iter().position(|p| p == field)?;
            let value = tuple.get(i)?;
            has_type(value, *ty).then_some(value)
        })
        .collect()
}

fn address(v: &DynSolValue) -> Option<Address> {
    match v {
        DynSolValue::Address(a) => Some(*a),
        _ => None,
    }
}

fn uint(v: &DynSolValue) -> Option<U256> {
    match v {
        DynSolValue::Uint(u, _) => Some(*u),
        _ => None,
    }
}

fn items(v: &DynSolValue) -> &[DynSolValue] {
    match v {
        DynSolValue::Array(items) => items,
        _ => &[],
    }
}

fn grant(
    spender: Address,
    token: Option<Address>,
    amount: U256,
    unlimited: bool,
    expiry: Option<U256>,
    chain_id: u64,
) -> Allowance {
    let contract = token.map(|t| t.to_checksum(None));
    let known = token.and_then(|t| crate::calldata::known_token(chain_id, t));
    let mut asset = abi::token_asset(contract.as_deref().unwrap_or_default(), known);
    // A permit whose domain names no verifying contract names no token either.
    asset.contract = contract;
    Allowance {
        spender: spender.to_checksum(None),
        asset,
        amount: amount.to_string(),
        unlimited,
        expiry: expiry.map(|e| e.to_string()),
    }
}

const PERMIT_DETAILS: &[(&str, Ty)] = &[
    ("token", Ty::Address),
    ("amount", Ty::Uint(160)),
    ("expiration", Ty::Uint(48)),
    ("nonce", Ty::Uint(48)),
];
const TOKEN_PERMISSIONS: &[(&str, Ty)] = &[("token", Ty::Address), ("amount", Ty::Uint(256))];

/// A Permit2 `PermitDetails`: an allowance through Permit2 until `expiration` (0: only
/// within the block it is used in).
fn permit2_details(d: &DynSolValue, spender: Address, chain_id: u64) -> Option<Allowance> {
    let f = fields(d, "PermitDetails", PERMIT_DETAILS)?;
    let amount = uint(f[1])?;
    Some(grant(
        spender,
        address(f[0]),
        amount,
        crate::calldata::is_unlimited_u160(amount),
        uint(f[2]),
        chain_id,
    ))
}

/// A Permit2 `TokenPermissions`: a one-time transfer of up to `amount` by the spender
/// before `deadline`.
fn token_permissions(
    p: &DynSolValue,
    spender: Address,
    deadline: Option<U256>,
    chain_id: u64,
) -> Option<Allowance> {
    let f = fields(p, "TokenPermissions", TOKEN_PERMISSIONS)?;
    let amount = uint(f[1])?;
    Some(grant(
        spender,
        address(f[0]),
        amount,
        abi::is_unlimited_u256(&amount.to_be_bytes::<32>()),
        deadline,
        chain_id,
    ))
}

/// The allowances a typed-data message grants when it is one of the permit formats:
/// EIP-2612 `Permit`, DAI's `Permit`, Permit2's `PermitSingle` / `PermitBatch`
/// (allowance transfer) and `PermitTransferFrom` / `PermitBatchTransferFrom` and their
/// `Witness` variants (signature transfer). Empty for anything else, and for any
/// message that only resembles one (see [`fields`]): all of it stays in `typed_data`.
/// An element of a batch that does not match makes the whole batch unrecognised, so a
/// batch is never half read.
fn permit_allowances(
    value: &DynSolValue,
    verifying_contract: Option<Address>,
    chain_id: u64,
) -> Vec<Allowance> {
    let DynSolValue::CustomStruct { name, .. } = value else {
        return vec![];
    };
    let found: Option<Vec<Allowance>> = match name.as_str() {
        "Permit" => {
            let eip2612 = [
                ("owner", Ty::Address),
                ("spender", Ty::Address),
                ("value", Ty::Uint(256)),
                ("nonce", Ty::Uint(256)),
                ("deadline", Ty::Uint(256)),
            ];
            let dai = [
                ("holder", Ty::Address),
                ("spender", Ty::Address),
                ("nonce", Ty::Uint(256)),
                ("expiry", Ty::Uint(256)),
                ("allowed", Ty::Bool),
            ];
            if let Some(f) = fields(value, "Permit", &eip2612) {
                (|| {
                    let amount = uint(f[2])?;
                    Some(vec![grant(
                        address(f[1])?,
                        verifying_contract,
                        amount,
                        abi::is_unlimited_u256(&amount.to_be_bytes::<32>()),
                        uint(f[4]),
                        chain_id,
                    )])
                })()
            } else if let Some(f) = fields(value, "Permit", &dai) {
                (|| {
                    // DAI: `allowed` grants the maximum, otherwise revokes (zero); an
                    // expiry of 0 means the permit never expires.
                    let allowed = matches!(f[4], DynSolValue::Bool(true));
                    let expiry = uint(f[3]).filter(|e| !e.is_zero());
                    let amount = if allowed { U256::MAX } else { U256::ZERO };
                    Some(vec![grant(
                        address(f[1])?,
                        verifying_contract,
                        amount,
                        allowed,
                        expiry,
                        chain_id,
                    )])
                })()
            } else {
                None
            }
        }
        "PermitSingle" => fields(
            value,
            "PermitSingle",
            &[
                ("details", Ty::Struct("PermitDetails")),
                ("spender", Ty::Address),
                ("sigDeadline", Ty::Uint(256)),
            ],
        )
        .and_then(|f| Some(vec![permit2_details(f[0], address(f[1])?, chain_id)?])),
        "PermitBatch" => fields(
            value,
            "PermitBatch",
            &[
                ("details", Ty::StructArray("PermitDetails")),
                ("spender", Ty::Address),
                ("sigDeadline", Ty::Uint(256)),
            ],
        )
        .and_then(|f| {
            let spender = address(f[1])?;
            items(f[0])
                .iter()
                .map(|d| permit2_details(d, spender, chain_id))
                .collect()
        }),
        "PermitTransferFrom"
        | "PermitWitnessTransferFrom"
        | "PermitBatchTransferFrom"
        | "PermitBatchWitnessTransferFrom" => {
            let batch = name.contains("Batch");
            let mut want = vec![
                (
                    "permitted",
                    if batch {
                        Ty::StructArray("TokenPermissions")
                    } else {
                        Ty::Struct("TokenPermissions")
                    },
                ),
                ("spender", Ty::Address),
                ("nonce", Ty::Uint(256)),
                ("deadline", Ty::Uint(256)),
            ];
            if name.contains("Witness") {
                want.push(("witness", Ty::Any));
            }
            fields(value, name, &want).and_then(|f| {
                let spender = address(f[1])?;
                let deadline = uint(f[3]);
                if batch {
                    items(f[0])
                        .iter()
                        .map(|p| token_permissions(p, spender, deadline, chain_id))
                        .collect()
                } else {
                    Some(vec![token_permissions(f[0], spender, deadline, chain_id)?])
                }
            })
        }
        _ => None,
    };
    found.unwrap_or_default()
}
