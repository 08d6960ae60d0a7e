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
