//! From a sign request's data to what is signed: the chain's plugin parses the raw data
//! into the intent and the payloads (digests or messages) to sign. The host runs this to
//! decide early; every signing node runs it again with its own pinned plugins and signs
//! only what it derived.

use custos_plugin_runtime::{CallError, PluginRuntime};
use custos_plugin_sdk as sdk;
use custos_policy::Action;
use serde_json::Value;
use std::collections::BTreeMap;

/// The address kinds of a key object (DESIGN §7): (name, plugin, network).
pub const ADDRESS_KINDS: &[(&str, &str, &str)] = &[
    ("evm", "evm", "1"),
    ("tron", "tron", "mainnet"),
    ("bitcoin", "bitcoin", "mainnet"),
    ("bitcoin_testnet", "bitcoin", "testnet"),
    ("solana", "solana", "mainnet"),
];

/// Which address of the key the intent's `from` is, per chain.
pub fn address_key(chain: &str) -> &str {
    match chain {
        "evm" => "evm",
        "tron" => "tron",
        "bitcoin" => "bitcoin",
        "solana" => "solana",
        other => other,
    }
}

/// Every address kind the loaded plugins give a key of `curve` (`plugin_key` as plugins
/// take it: uncompressed secp256k1 or 32-byte ed25519).
pub fn addresses(
    rt: &PluginRuntime,
    curve: sdk::Curve,
    plugin_key: &[u8],
) -> Result<BTreeMap<String, String>, CallError> {
    let mut out = BTreeMap::new();
    for (name, plugin, network) in ADDRESS_KINDS {
        let Some(p) = rt.plugin(plugin) else {
            continue;
        };
        if curve != p.info.curve {
            continue;
        }
        out.insert(
            name.to_string(),
            rt.derive_address(plugin, plugin_key, network)?,
        );
    }
    Ok(out)
}

/// What is signed and how the signature becomes the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Tx { raw: Vec<u8> },
    Message,
    Hash,
}

/// What the plugin made of a request's data.
#[derive(Clone, Debug)]
pub struct Derived {
    pub intent: sdk::Intent,
    pub payloads: Vec<sdk::SigningPayload>,
    pub what: What,
    pub action: Action,
}

#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error("chain `{chain}` is not supported; supported: {supported}")]
    UnsupportedChain { chain: String, supported: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// `0x`-prefixed hex of `field`.
pub fn decode_hex(field: &str, s: &str) -> Result<Vec<u8>, DeriveError> {
    let h = s
        .strip_prefix("0x")
        .ok_or_else(|| DeriveError::Invalid(format!("`{field}` must be 0x-prefixed hex")))?;
    hex::decode(h).map_err(|_| DeriveError::Invalid(format!("`{field}` is not valid hex")))
}

/// The request's data as the plugin for `chain` reads it.
pub struct Input<'a> {
    pub key_id: &'a str,
    pub chain: &'a str,
    pub network: Option<&'a str>,
    pub data_type: &'a str,
    pub data: &'a Value,
    /// The key's curve and its plugin form.
    pub curve: sdk::Curve,
    pub plugin_key: &'a [u8],
    /// The key's address on `chain` (a HASH intent's `from`).
    pub from: String,
}

pub fn derive(rt: &PluginRuntime, i: &Input<'_>) -> Result<Derived, DeriveError> {
    let plugin = rt
        .plugin(i.chain)
        .ok_or_else(|| DeriveError::UnsupportedChain {
            chain: i.chain.into(),
            supported: rt
                .plugins()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if i.curve != plugin.info.curve {
        return Err(DeriveError::Invalid(format!(
            "key `{}` is {}; chain `{}` needs {}",
            i.key_id,
            i.curve.as_str(),
            i.chain,
            plugin.info.curve.as_str().to_ascii_uppercase()
        )));
    }
    let pk = i.plugin_key;
    let data_str = |what: &str| -> Result<&str, DeriveError> {
        i.data
            .as_str()
            .ok_or_else(|| DeriveError::Invalid(format!("`data` must be a string ({what})")))
    };
    Ok(match i.data_type {
        "RAW_TX" => {
            let raw = decode_hex(
                "data",
                data_str("0x-prefixed hex of the unsigned transaction")?,
            )?;
            let (intent, payloads) = rt.parse_with_payloads(i.chain, &raw, i.network, Some(pk))?;
            Derived {
                intent,
                payloads,
                what: What::Tx { raw },
                action: Action::SignTransaction,
            }
        }
        "EIP191" | "EIP712" => {
            if i.chain != "evm" {
                return Err(DeriveError::Invalid(format!(
                    "data_type `{}` is for chain `evm`",
                    i.data_type
                )));
            }
            let message = if i.data_type == "EIP191" {
                sdk::Message::Personal(decode_hex(
                    "data",
                    data_str("0x-prefixed hex of the message bytes")?,
                )?)
            } else {
                match i.data {
                    Value::String(s) => sdk::Message::TypedDataJson(s.clone()),
                    Value::Object(_) => sdk::Message::TypedDataJson(i.data.to_string()),
                    _ => {
                        return Err(DeriveError::Invalid(
                            "`data` must be the typed-data JSON object (or a string holding it)"
                                .into(),
                        ));
                    }
                }
            };
            let parsed = rt.parse_message(i.chain, &message, i.network, Some(pk))?;
            Derived {
                intent: parsed.intent,
                payloads: vec![parsed.payload],
                what: What::Message,
                action: Action::SignMessage,
            }
        }
        "HASH" => {
            let digest = decode_hex("data", data_str("0x-prefixed hex of 32 bytes")?)?;
            if digest.len() != 32 {
                return Err(DeriveError::Invalid(format!(
                    "a HASH must be 32 bytes, got {}",
                    digest.len()
                )));
            }
            let Some(scheme) = plugin.info.schemes.first().copied() else {
                return Err(DeriveError::Invalid(format!(
                    "plugin `{}` names no signature scheme",
                    i.chain
                )));
            };
            let intent = sdk::Intent {
                chain: i.chain.into(),
                network: i.network.unwrap_or_default().into(),
                kind: sdk::IntentKind::Hash,
                from: i.from.clone(),
                transfers: vec![],
                call: None,
                fee_max: None,
                fee_asset: None,
                allowances: vec![],
                network_bound: false,
                nonce: None,
                typed_data: None,
                extra: vec![("hash".into(), format!("0x{}", hex::encode(&digest)))],
            };
            Derived {
                intent,
                payloads: vec![sdk::SigningPayload {
                    index: 0,
                    scheme,
                    digest,
                }],
                what: What::Hash,
                action: Action::SignHash,
            }
        }
        other => {
            return Err(DeriveError::Invalid(format!(
                "data_type `{other}` is not supported; supported: RAW_TX, EIP191, EIP712, HASH"
            )));
        }
    })
}
