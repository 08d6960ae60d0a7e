//! The OpenAPI 3 document (`GET /api/v1/openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations (`routes.rs`) and the types the service reads and
//! answers with: the request bodies (`GenerateBody`, `StatusBody`, `TagsBody`, `SignBody`,
//! `ApprovalBody`) and the key object (`KeyRecord`) are the real types. The answers the
//! service builds as JSON values (sign responses, lists, errors) and the free-form
//! transaction-building body are described by the types below, which exist for the
//! document only.
#![allow(dead_code)]

use crate::keys::{GenerateBody, StatusBody};
use crate::registry::{KeyFormat, KeyRecord, ShardProperties, StatusChange};
use crate::sign::{ApprovalBody, SignBody};
use crate::tags::TagsBody;
use serde_json::Value;
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
pub struct KeyList {
    pub keys: Vec<KeyRecord>,
    pub next_cursor: Option<String>,
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
    /// PENDING_APPROVAL: the canonical statement each approver signs with their own key
    /// (sent back as the approve body's `statement_signature`; DESIGN §3a)
    pub approval_statement: Option<String>,
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
pub struct AuditList {
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Value>,
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/nodes`.
#[derive(ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
}

/// One node; a node that does not answer shows `up: false`, no counts, and the bans it
/// reported last.
#[derive(ToSchema)]
pub struct NodeView {
    pub id: u16,
    pub up: bool,
    pub shard_count: Option<u64>,
    /// key ids the node holds a shard of
    pub keys: Option<Vec<String>>,
    pub bans: Vec<NodeBan>,
    pub version: Option<String>,
    /// keys the node should hold (by the host's records) that it holds at another
    /// generation or not at all: `{key_id, generation, held, algo_type}`; null when down
    #[schema(value_type = Option<Vec<Object>>)]
    pub generation_lag: Option<Vec<Value>>,
    /// the node's last backup as its BACKUP event told: `at` (RFC 3339, null if none
    /// seen) and `current` (the backup holds exactly the keys and generations the node
    /// holds now; false with no backup, null when the node is down)
    #[schema(value_type = Object)]
    pub backup: Value,
    /// the node's last repair (kept across host restarts): state (RUNNING, DONE, FAILED,
    /// INTERRUPTED: the host stopped while it ran), total, repaired, failed,
    /// not_repairable (CGGMP21 keys, with what to do instead), up_to_date
    #[schema(value_type = Option<Object>)]
    pub repair: Option<Value>,
}

/// `node` is banned from every session of `key_id` with the node that lists it (DKLS23
/// `BanCounterparty`, or an operator's `custos-node ban`); the host does not pair them.
#[derive(ToSchema)]
pub struct NodeBan {
    pub key_id: String,
    pub node: u16,
    /// unix seconds
    pub since: u64,
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
        super::routes::generate,
        super::routes::list_keys,
        super::routes::get_key,
        super::routes::set_status,
        super::routes::set_tags,
        super::routes::sign,
        super::routes::build_tx,
        super::routes::refresh,
        super::routes::move_key,
        super::routes::repair_node,
        super::routes::get_request,
        super::routes::approve,
        super::routes::reject,
        super::routes::audit_list,
        super::routes::audit_verify,
        super::routes::audit_reconcile,
        super::routes::nodes,
        super::routes::plugins,
        super::routes::policies,
        super::routes::policies_validate,
        super::routes::policies_replay,
        super::routes::policies_reload,
        super::routes::openapi,
        super::routes::healthz,
        super::routes::readyz,
        super::routes::metrics,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, GenerateBody, KeyRecord, KeyList, StatusBody, SignBody,
        SignResponse, PolicyDecision, PayloadSignature, TransactionRequest, TransactionResponse,
        ApprovalBody, AuditList, AuditVerify, KeyFormat, ShardProperties, StatusChange,
        NodeList, NodeView, NodeBan, TagsBody
    ))
)]
struct ApiDoc;

pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

/// The document's shape: each path with its methods, each schema with its property
/// names. What clients and generators build on; the compatibility test pins it.
pub fn shape(doc: &Value) -> Value {
    let mut paths = serde_json::Map::new();
    if let Some(ps) = doc["paths"].as_object() {
        for (p, ops) in ps {
            let mut methods: Vec<&String> = ops
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            methods.sort();
            paths.insert(p.clone(), serde_json::json!(methods));
        }
    }
    let mut schemas = serde_json::Map::new();
    if let Some(ss) = doc["components"]["schemas"].as_object() {
        for (name, schema) in ss {
            let mut props: Vec<&String> = schema["properties"]
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            props.sort();
            schemas.insert(name.clone(), serde_json::json!(props));
        }
    }
    crate::canonical::sorted(&serde_json::json!({"paths": paths, "schemas": schemas}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document lists the same paths (with their methods) and the same schemas (with
    /// their properties) as the one the service served before its request and key types
    /// became the schemas' source (`tests/fixtures/openapi-shape.json`, taken from that
    /// build's `GET /api/v1/openapi.json`). A path or schema added on purpose: write the
    /// file again with `CUSTOS_WRITE_FIXTURES=1 .ci/cargo test --workspace --lib openapi`
    /// and check the diff only adds lines.
    #[test]
    fn same_paths_and_schemas_as_before() {
        if std::env::var_os("CUSTOS_WRITE_FIXTURES").is_some() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/openapi-shape.json");
            let text = serde_json::to_string_pretty(&shape(&document())).unwrap();
            std::fs::write(path, text.replace("  ", " ") + "\n").unwrap();
            return;
        }
        let want: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/openapi-shape.json")).unwrap();
        assert_eq!(shape(&document()), want);
    }

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
            "/api/v1/keys/{key_id}/tags",
            "/api/v1/keys/{key_id}/sign",
            "/api/v1/keys/{key_id}/transactions",
            "/api/v1/keys/{key_id}/refresh",
            "/api/v1/requests/{request_id}",
            "/api/v1/requests/{request_id}/approve",
            "/api/v1/requests/{request_id}/reject",
            "/api/v1/audit",
            "/api/v1/audit/verify",
            "/api/v1/nodes",
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
