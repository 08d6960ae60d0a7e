//! First stage: the request's data through the chain's plugin, into the intent and the
//! payloads to sign. No state is touched.

use super::SignBody;
use crate::error::{ApiError, ApiResult, Code};
use crate::registry::KeyRecord;
use crate::service::Service;
use custos_plugin_sdk as sdk;
use custos_policy::Action;
use serde_json::Value;

pub(crate) use custos_authority::derive::What;
use custos_authority::derive::{self, DeriveError, Input};

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

impl From<DeriveError> for ApiError {
    fn from(e: DeriveError) -> Self {
        match e {
            DeriveError::UnsupportedChain { .. } => {
                ApiError::new(Code::UnsupportedChain, e.to_string())
            }
            DeriveError::Invalid(m) => ApiError::invalid(m),
            DeriveError::Call(c) => c.into(),
        }
    }
}

/// An `EIP712` body with its typed-data object's `data` read again from the request bytes,
/// integer literals beyond 64 bits kept as exact decimal strings. serde_json (without its
/// `arbitrary_precision` feature, which would change it for every crate) reads such a
/// literal, e.g. a `uint256` sent as `1000000000000000000000000000000`, as the float
/// `1e30`, which the plugin refuses; as a string it means the same to EIP-712 and nothing
/// is rounded. Done before anything else sees the body, so the request record, its hash,
/// the approvals and the nodes all see the same exact text. Any other body is unchanged.
pub(crate) fn exact_eip712_data(bytes: &[u8], mut body: Value) -> Value {
    let typed_object = body.get("data_type").and_then(Value::as_str) == Some("EIP712")
        && body.get("data").is_some_and(Value::is_object);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return body;
    };
    if !typed_object {
        return body;
    }
    let std::borrow::Cow::Owned(exact) = sdk::json_numbers::big_integers_as_strings(text) else {
        return body;
    };
    if let (Ok(Value::Object(mut m)), Some(slot)) =
        (serde_json::from_str::<Value>(&exact), body.get_mut("data"))
        && let Some(data) = m.remove("data")
    {
        *slot = data;
    }
    body
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
        let data_hash = crate::canonical::sha256_hex(&body.data);
        let d = derive::derive(
            &self.runtime,
            &Input {
                key_id: &key.key_id,
                chain: &body.chain,
                network: body.network.as_deref(),
                data_type: &body.data_type,
                data: &body.data,
                curve: key.format.curve,
                plugin_key: &key.plugin_key,
                from: key
                    .addresses
                    .get(derive::address_key(&body.chain))
                    .cloned()
                    .unwrap_or_default(),
            },
        )?;
        let (intent, payloads, what, action) = (d.intent, d.payloads, d.what, d.action);
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

#[cfg(test)]
mod tests {
    use super::exact_eip712_data;
    use serde_json::{Value, json};

    fn exact(body: &str) -> Value {
        exact_eip712_data(body.as_bytes(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn eip712_big_integers_reach_the_plugin_exactly() {
        let v = exact(
            r#"{"request_id":"r1","chain":"evm","data_type":"EIP712",
                "data":{"message":{"value":1000000000000000000000000000000,"n":5,"f":1.5}},"x":100000000000000000000000}"#,
        );
        assert_eq!(
            v["data"]["message"],
            json!({"value":"1000000000000000000000000000000","n":5,"f":1.5})
        );
        // Only `data` is re-read.
        assert!(v["x"].is_f64());
    }

    #[test]
    fn other_bodies_are_unchanged() {
        for body in [
            r#"{"data_type":"RAW_TX","data":{"v":1000000000000000000000000000000}}"#,
            r#"{"data_type":"EIP712","data":"{\"v\":1000000000000000000000000000000}"}"#,
            r#"{"data_type":"EIP712","data":{"v":1}}"#,
        ] {
            assert_eq!(
                exact(body),
                serde_json::from_str::<Value>(body).unwrap(),
                "{body}"
            );
        }
    }
}
