//! The OpenAPI 3 document (`GET /api/v1/openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations (in `api.rs`) and the schema types here. The request
//! types the handlers parse carry their own schema where they can; answers, which the
//! handlers build as JSON, are described by the types below.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// `{"error":{"code","message", …}}`; `policies` for POLICY_DENIED.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// UNAUTHENTICATED, FORBIDDEN, POLICY_DENIED, INVALID_REQUEST, UNSUPPORTED_CHAIN,
    /// PARSE_ERROR, KEY_NOT_FOUND, REQUEST_NOT_FOUND, KEY_NOT_ACTIVE, INVALID_TRANSITION,
    /// REQUEST_ID_REUSED, PAYLOAD_TOO_LARGE, RATE_LIMITED, NODES_UNAVAILABLE, INTERNAL
    pub code: String,
    pub message: String,
    pub policies: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct KeyFormatDoc {
    /// `ECC`
    #[schema(rename = "type")]
    pub ty: String,
    /// `SECP256K1` | `ED25519`
    pub curve: String,
    /// `DKLS23` (default for SECP256K1) | `CGGMP21` | `FROST` (ED25519)
    pub algo_type: String,
    pub size: u32,
}

#[derive(ToSchema)]
pub struct ShardPropertiesDoc {
    pub shard_count: u16,
    pub threshold: u16,
}

/// Body of `POST /keys/generate`; every field is optional.
#[derive(ToSchema)]
pub struct GenerateRequest {
    pub format: Option<KeyFormatDoc>,
    pub shard_properties: Option<ShardPropertiesDoc>,
    pub label: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    /// false: the key starts PRE_ACTIVE
    pub activate: Option<bool>,
}

#[derive(ToSchema)]
pub struct StatusChangeDoc {
    pub status: String,
    pub reason: Option<String>,
    pub at: String,
    pub by: String,
}

/// A key object.
#[derive(ToSchema)]
pub struct KeyObject {
    pub key_id: String,
    pub label: String,
    pub tags: BTreeMap<String, String>,
    /// 0x hex: 33-byte compressed secp256k1 or 32-byte ed25519
    pub public_key: String,
    /// evm (EIP-55), tron, bitcoin, bitcoin_testnet (secp256k1); solana (ed25519)
    pub addresses: BTreeMap<String, String>,
    /// PRE_ACTIVE | ACTIVE | FROZEN | ARCHIVED | COMPROMISED | DESTROYED
    pub status: String,
    pub format: KeyFormatDoc,
    pub shard_properties: ShardPropertiesDoc,
    pub nodes: Vec<u16>,
    pub created_at: String,
    pub status_history: Vec<StatusChangeDoc>,
}

#[derive(ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyObject>,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct StatusRequest {
    pub status: String,
    pub reason: Option<String>,
}

/// Body of `POST /keys/{key_id}/sign`.
#[derive(ToSchema)]
pub struct SignRequest {
    /// 1-128 characters of [A-Za-z0-9._:-], scoped to the calling client
    pub request_id: String,
    /// evm | bitcoin | tron | solana
    pub chain: String,
    pub network: Option<String>,
    /// RAW_TX | EIP191 | EIP712 | HASH
    pub data_type: String,
    /// 0x hex, or the EIP-712 typed-data object
    #[schema(value_type = Object)]
    pub data: Value,
    pub dry_run: Option<bool>,
}

#[derive(ToSchema)]
pub struct PolicyDecision {
    /// ALLOW | DENY | NEEDS_APPROVAL
    pub decision: String,
    pub policies: Vec<String>,
}

#[derive(ToSchema)]
pub struct PayloadSignature {
    pub index: u32,
    pub signature: String,
}

/// A sign request's state: SIGNED, PENDING_APPROVAL, REJECTED, DRY_RUN, FAILED.
#[derive(ToSchema)]
pub struct SignResponse {
    pub request_id: String,
    pub status: String,
    pub key_id: String,
    pub chain: Option<String>,
    #[schema(value_type = Object)]
    pub intent: Value,
    pub policy: PolicyDecision,
    /// EIP191 / EIP712 / HASH: r‖s‖v, v = 27/28
    pub signature: Option<String>,
    /// RAW_TX: one per signed payload
    pub signatures: Option<Vec<PayloadSignature>>,
    pub signed_tx: Option<String>,
    pub tx_hash: Option<String>,
    pub approvals_required: Option<u32>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub approvals: Option<Vec<Value>>,
}

/// Body of `POST /keys/{key_id}/transactions`; chain-specific fee fields go beside these
/// (EVM: nonce, gas_limit, tx_type, gas_price, max_fee_per_gas, max_priority_fee_per_gas).
#[derive(ToSchema)]
pub struct TransactionRequest {
    pub chain: String,
    pub network: Option<String>,
    pub to: String,
    /// base units, decimal string
    pub amount: String,
    /// token contract / mint
    pub asset: Option<String>,
}

#[derive(ToSchema)]
pub struct TransactionResponse {
    pub data: String,
    #[schema(value_type = Object)]
    pub intent: Value,
}

#[derive(ToSchema)]
pub struct ApprovalRequest {
    pub comment: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditList {
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditVerify {
    pub ok: bool,
    pub entries: u64,
    pub head: String,
    pub first_bad_seq: Option<u64>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Custos-Access-Key",
                "with X-Custos-Timestamp (unix seconds), X-Custos-Nonce (16-64 of [A-Za-z0-9_-]) and \
                 X-Custos-Signature = hex HMAC-SHA256(secret, METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nhex(sha256(body)))",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "custos", description = "threshold-signing custody host: REST API v1"),
    modifiers(&Security),
    paths(
        crate::api::generate,
        crate::api::list_keys,
        crate::api::get_key,
        crate::api::set_status,
        crate::api::sign,
        crate::api::build_tx,
        crate::api::refresh,
        crate::api::get_request,
        crate::api::approve,
        crate::api::reject,
        crate::api::audit_list,
        crate::api::audit_verify,
        crate::api::plugins,
        crate::api::policies,
        crate::api::policies_validate,
        crate::api::policies_reload,
        crate::api::openapi,
        crate::api::healthz,
        crate::api::readyz,
        crate::api::metrics,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, GenerateRequest, KeyObject, KeyList, StatusRequest, SignRequest,
        SignResponse, PolicyDecision, PayloadSignature, TransactionRequest, TransactionResponse,
        ApprovalRequest, AuditList, AuditVerify, KeyFormatDoc, ShardPropertiesDoc, StatusChangeDoc
    ))
)]
struct ApiDoc;

pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let d = document();
        assert_eq!(
            d["openapi"].as_str().map(|s| s.starts_with("3.")),
            Some(true)
        );
        let paths = d["paths"].as_object().unwrap();
        for p in [
            "/api/v1/keys/generate",
            "/api/v1/keys",
            "/api/v1/keys/{key_id}",
            "/api/v1/keys/{key_id}/status",
            "/api/v1/keys/{key_id}/sign",
            "/api/v1/keys/{key_id}/transactions",
            "/api/v1/keys/{key_id}/refresh",
            "/api/v1/requests/{request_id}",
            "/api/v1/requests/{request_id}/approve",
            "/api/v1/requests/{request_id}/reject",
            "/api/v1/audit",
            "/api/v1/audit/verify",
            "/api/v1/plugins",
            "/api/v1/policies",
            "/api/v1/policies/validate",
            "/api/v1/policies/reload",
            "/api/v1/openapi.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} missing from the OpenAPI document"
            );
        }
        assert!(d["components"]["securitySchemes"]["hmac"].is_object());
    }
}
