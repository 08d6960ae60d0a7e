//! EIP-191 personal messages and EIP-712 typed data.

use alloy_dyn_abi::{DynSolValue, TypedData as AlloyTypedData};
use alloy_primitives::{U256, hex, keccak256};
use custos_plugin_sdk::{
    Intent, IntentKind, ParsedMessage, PluginError, PluginResult, SignatureScheme, SigningPayload,
    TypedData, TypedDomain, TypedField,
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
    let td: AlloyTypedData = serde_json::from_str(json)
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
    if td.primary_type != "EIP712Domain" {
        let value = td.coerce().map_err(|e| {
            PluginError::parse(format!("typed data message does not match its types: {e}"))
        })?;
        flatten(&value, "", &mut message)?;
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
    let mut intent = message_intent(IntentKind::TypedData, net, from);
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
