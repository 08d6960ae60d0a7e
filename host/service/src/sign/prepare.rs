//! First stage: the request's data through the chain's plugin, into the intent and the
//! payloads to sign. No state is touched.

use super::{SignBody, decode_hex};
use crate::error::{ApiError, ApiResult, Code};
use crate::registry::KeyRecord;
use crate::service::Service;
use custos_plugin_sdk as sdk;
use custos_policy::Action;
use serde_json::Value;

/// What is signed and how the signature becomes the answer.
pub(crate) enum What {
    Tx { raw: Vec<u8> },
    Message,
    Hash,
}

/// A request ready for the policy: the key as read once, the body as parsed once, and what
/// the plugin made of the data.
pub(crate) struct Prepared {
    pub key: KeyRecord,
    pub body: SignBody,
    /// The body as received (the request record keeps it, to sign it once approved).
    pub request: Value,
    /// sha256 of the canonical body without `dry_run`: "the same body" for idempotency.
    pub body_hash: String,
    /// hex sha256 of the canonical `data` (audit `data_hash`).
    pub data_hash: String,
    pub intent: sdk::Intent,
    pub payloads: Vec<sdk::SigningPayload>,
    pub what: What,
    pub action: Action,
}

/// Which address of the key the intent's `from` is, per chain.
fn address_key(chain: &str) -> &str {
    match chain {
        "evm" => "evm",
        "tron" => "tron",
        "bitcoin" => "bitcoin",
        "solana" => "solana",
        other => other,
    }
}

impl Service {
    /// Parses the request data with the chain's plugin into an intent and the payloads to
    /// sign.
    pub(crate) fn prepare(
        &self,
        key: KeyRecord,
        body: SignBody,
        request: Value,
        body_hash: String,
    ) -> ApiResult<Prepared> {
        let plugin = self.runtime.plugin(&body.chain).ok_or_else(|| {
            let loaded: Vec<String> = self.runtime.plugins().map(|p| p.name.clone()).collect();
            ApiError::new(
                Code::UnsupportedChain,
                format!(
                    "chain `{}` is not supported; supported: {}",
                    body.chain,
                    loaded.join(", ")
                ),
            )
        })?;
        if key.format.curve != plugin.info.curve {
            return Err(ApiError::invalid(format!(
                "key `{}` is {}; chain `{}` needs {}",
                key.key_id,
                key.format.curve.as_str(),
                body.chain,
                plugin.info.curve.as_str().to_ascii_uppercase()
            )));
        }
        let pk = key.plugin_key.as_slice();
        let network = body.network.as_deref();
        let data_hash = crate::canonical::sha256_hex(&body.data);
        let data_str = |what: &str| -> ApiResult<&str> {
            body.data
                .as_str()
                .ok_or_else(|| ApiError::invalid(format!("`data` must be a string ({what})")))
        };
        let (intent, payloads, what, action) = match body.data_type.as_str() {
            "RAW_TX" => {
                let raw = decode_hex(
                    "data",
                    data_str("0x-prefixed hex of the unsigned transaction")?,
                )?;
                let (intent, payloads) =
                    self.runtime
                        .parse_with_payloads(&body.chain, &raw, network, Some(pk))?;
                (intent, payloads, What::Tx { raw }, Action::SignTransaction)
            }
            "EIP191" | "EIP712" => {
                if body.chain != "evm" {
                    return Err(ApiError::invalid(format!(
                        "data_type `{}` is for chain `evm`",
                        body.data_type
                    )));
                }
                let message = if body.data_type == "EIP191" {
                    sdk::Message::Personal(decode_hex(
                        "data",
                        data_str("0x-prefixed hex of the message bytes")?,
                    )?)
                } else {
                    match &body.data {
                        Value::String(s) => sdk::Message::TypedDataJson(s.clone()),
                        Value::Object(_) => sdk::Message::TypedDataJson(body.data.to_string()),
                        _ => {
                            return Err(ApiError::invalid(
                                "`data` must be the typed-data JSON object (or a string holding it)",
                            ));
                        }
                    }
                };
                let parsed =
                    self.runtime
                        .parse_message(&body.chain, &message, network, Some(pk))?;
                (
                    parsed.intent,
                    vec![parsed.payload],
                    What::Message,
                    Action::SignMessage,
                )
            }
            "HASH" => {
                let digest = decode_hex("data", data_str("0x-prefixed hex of 32 bytes")?)?;
                if digest.len() != 32 {
                    return Err(ApiError::invalid(format!(
                        "a HASH must be 32 bytes, got {}",
                        digest.len()
                    )));
                }
                let Some(scheme) = plugin.info.schemes.first().copied() else {
                    return Err(ApiError::internal("plugin names no signature scheme"));
                };
                let intent = sdk::Intent {
                    chain: body.chain.clone(),
                    network: body.network.clone().unwrap_or_default(),
                    kind: sdk::IntentKind::Hash,
                    from: key
                        .addresses
                        .get(address_key(&body.chain))
                        .cloned()
                        .unwrap_or_default(),
                    transfers: vec![],
                    call: None,
                    fee_max: None,
                    nonce: None,
                    typed_data: None,
                    extra: vec![("hash".into(), format!("0x{}", hex::encode(&digest)))],
                };
                let payload = sdk::SigningPayload {
                    index: 0,
                    scheme,
                    digest,
                };
                (intent, vec![payload], What::Hash, Action::SignHash)
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "data_type `{other}` is not supported; supported: RAW_TX, EIP191, EIP712, HASH"
                )));
            }
        };
        Ok(Prepared {
            key,
            body,
            request,
            body_hash,
            data_hash,
            intent,
            payloads,
            what,
            action,
        })
    }
}
