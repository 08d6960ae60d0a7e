//! The handlers: each parses what its route carries, calls the service once, and answers.
//! The `#[utoipa::path]` annotations are the OpenAPI document's paths (`openapi.rs`).

use super::openapi::{
    AuditList, AuditVerify, ErrorBody, KeyList, NodeList, SignResponse, TransactionRequest,
    TransactionResponse,
};
use super::{answer, with_status};
use crate::audit::AuditFilter;
use crate::auth::{Role, require_role};
use crate::error::{ApiError, one_line};
use crate::keys::{GenerateBody, StatusBody};
use crate::registry::{KeyFilter, KeyRecord, Status};
use crate::service::{Caller, Service};
use crate::sign::{ApprovalBody, SignBody};
use crate::tags::TagsBody;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[utoipa::path(post, path = "/api/v1/keys/generate", tag = "keys", request_body = GenerateBody, responses((status = 201, description = "the new key", body = KeyRecord), (status = 503, description = "NODES_UNAVAILABLE: not enough nodes, or (CGGMP21) the nodes' Paillier primes are not ready yet; with Retry-After", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed, `tags.group` named by a client without the admin role (FORBIDDEN), or POLICY_DENIED", body = ErrorBody), (status = 429, description = "rate limited, or the client's key generations in flight are at the cap (RATE_LIMITED, Retry-After)", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn generate(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    answer(s.generate_key(&caller, &body).await)
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    label: Option<String>,
    tag: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(("status" = Option<String>, Query,), ("label" = Option<String>, Query,), ("tag" = Option<String>, Query, description = "k:v or k"), ("limit" = Option<usize>, Query,), ("cursor" = Option<String>, Query,)), responses((status = 200, description = "keys", body = KeyList), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn list_keys(
    State(s): State<Arc<Service>>,
    Extension(_caller): Extension<Caller>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| {
        let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
        let status =
            match q.status.as_deref() {
                None | Some("") => None,
                Some(st) => Some(Status::parse(st).ok_or_else(|| {
                    ApiError::invalid(format!("status `{st}` is not a key status"))
                })?),
            };
        let tag = q.tag.map(|t| match t.split_once(':') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (t, None),
        });
        let (keys, next) = s.registry.list(&KeyFilter {
            status,
            label: q.label,
            tag,
            limit: q.limit.unwrap_or(100),
            cursor: q.cursor,
        })?;
        Ok((
            200,
            json!({"keys": keys.iter().map(|k| k.to_json()).collect::<Vec<_>>(), "next_cursor": next}),
        ))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/keys/{key_id}", tag = "keys", params(("key_id" = String, Path, description = "key id")), responses((status = 200, description = "the key", body = KeyRecord), (status = 404, description = "no such key", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn get_key(
    State(s): State<Arc<Service>>,
    Extension(_caller): Extension<Caller>,
    Path(key_id): Path<String>,
) -> Response {
    answer(s.registry.get(&key_id).map(|k| (200, k.to_json())))
}

#[utoipa::path(put, path = "/api/v1/keys/{key_id}/status", tag = "keys", params(("key_id" = String, Path, description = "key id")), request_body = StatusBody, responses((status = 200, description = "the key after the move", body = KeyRecord), (status = 409, description = "illegal move (INVALID_TRANSITION)", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn set_status(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.change_status(&caller, &key_id, &body).await)
}

#[utoipa::path(put, path = "/api/v1/keys/{key_id}/tags", tag = "keys", params(("key_id" = String, Path, description = "key id")), request_body = TagsBody, responses((status = 200, description = "the key with its new tags (admin; audited TAGS_CHANGE)", body = KeyRecord), (status = 404, description = "KEY_NOT_FOUND", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn set_tags(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.change_tags(&caller, &key_id, &body))
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/sign", tag = "signing", params(("key_id" = String, Path, description = "key id")), request_body = SignBody, responses((status = 200, description = "SIGNED (or DRY_RUN, or a recorded outcome)", body = SignResponse), (status = 202, description = "PENDING_APPROVAL", body = SignResponse), (status = 404, description = "KEY_NOT_FOUND", body = ErrorBody), (status = 409, description = "KEY_NOT_ACTIVE or REQUEST_ID_REUSED", body = ErrorBody), (status = 413, description = "body over 256 KiB", body = ErrorBody), (status = 503, description = "NODES_UNAVAILABLE (too few holders up, or busy; with Retry-After), or INTERRUPTED (the host restarted while the request was being signed): nothing was returned; the same id and body sent again tries again", body = ErrorBody), (status = 500, description = "INTERNAL: the audit log could not be written or the nodes' signature did not verify; the signature is withheld", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn sign(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.sign_request(&caller, &key_id, &body).await)
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/transactions", tag = "signing", params(("key_id" = String, Path, description = "key id")), request_body = TransactionRequest, responses((status = 200, description = "the unsigned transaction", body = TransactionResponse), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn build_tx(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.build_transaction(&caller, &key_id, &body).await)
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/refresh", tag = "keys", params(("key_id" = String, Path, description = "key id")), responses((status = 200, description = "new shards, same public key", body = KeyRecord), (status = 409, description = "the algorithm cannot refresh, or the key is not active", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn refresh(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
) -> Response {
    answer(s.refresh_key(&caller, &key_id).await)
}

/// `?requester=`: whose request an id means (request ids are scoped to their client).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequesterQuery {
    requester: Option<String>,
}

fn requester_of(
    q: Result<Query<RequesterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<String>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
    Ok(q.requester.filter(|r| !r.is_empty()))
}

#[utoipa::path(get, path = "/api/v1/requests/{request_id}", tag = "signing", params(("request_id" = String, Path, description = "the request id given when signing"), ("requester" = Option<String>, Query, description = "the requesting client (name or access key); approvers and auditors only, for another client's request; needed when more than one client used the id")), responses((status = 200, description = "the request", body = SignResponse), (status = 202, description = "pending approval", body = SignResponse), (status = 404, description = "REQUEST_NOT_FOUND", body = ErrorBody), (status = 409, description = "REQUEST_ID_REUSED: more than one client used the id; name the requester", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn get_request(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<RequesterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(requester_of(q).and_then(|r| s.request_view(&caller, &id, r.as_deref())))
}

#[utoipa::path(post, path = "/api/v1/requests/{request_id}/approve", tag = "approvals", params(("request_id" = String, Path, description = "the request id given when signing"), ("requester" = Option<String>, Query, description = "the requesting client (name or access key); needed when more than one client has a request of that id pending")), request_body = ApprovalBody, responses((status = 200, description = "quorum reached: SIGNED", body = SignResponse), (status = 202, description = "still pending, or held again: the policy, decided again at quorum, now asks for more approvals", body = SignResponse), (status = 404, description = "REQUEST_NOT_FOUND", body = ErrorBody), (status = 409, description = "not pending, or already approved by this approver (INVALID_TRANSITION); pending for more than one client: name the requester (REQUEST_ID_REUSED)", body = ErrorBody), (status = 500, description = "INTERNAL: the audit log could not be written or the nodes' signature did not verify; the signature is withheld", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed (FORBIDDEN), or POLICY_DENIED: the policy, decided again at quorum, now denies; nothing is signed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn approve(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<RequesterQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response {
    let r = match requester_of(q) {
        Ok(r) => r,
        Err(e) => return answer(Err(e)),
    };
    answer(
        s.decide_approval(&caller, &id, r.as_deref(), true, &body)
            .await,
    )
}

#[utoipa::path(post, path = "/api/v1/requests/{request_id}/reject", tag = "approvals", params(("request_id" = String, Path, description = "the request id given when signing"), ("requester" = Option<String>, Query, description = "the requesting client (name or access key); needed when more than one client has a request of that id pending")), request_body = ApprovalBody, responses((status = 200, description = "REJECTED", body = SignResponse), (status = 404, description = "REQUEST_NOT_FOUND", body = ErrorBody), (status = 409, description = "not pending (INVALID_TRANSITION); pending for more than one client: name the requester (REQUEST_ID_REUSED)", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn reject(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<RequesterQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response {
    let r = match requester_of(q) {
        Ok(r) => r,
        Err(e) => return answer(Err(e)),
    };
    answer(
        s.decide_approval(&caller, &id, r.as_deref(), false, &body)
            .await,
    )
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    key_id: Option<String>,
    request_id: Option<String>,
    operation: Option<String>,
    after_seq: Option<u64>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(("key_id" = Option<String>, Query,), ("request_id" = Option<String>, Query,), ("operation" = Option<String>, Query,), ("after_seq" = Option<u64>, Query,), ("cursor" = Option<String>, Query,), ("limit" = Option<usize>, Query,)), responses((status = 200, description = "entries", body = AuditList), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn audit_list(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| {
        require_role(&caller.client, &[Role::Auditor, Role::Admin])?;
        let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
        let after = match (q.after_seq, q.cursor) {
            (Some(a), _) => Some(a),
            (None, Some(c)) => Some(
                c.parse::<u64>()
                    .map_err(|_| ApiError::invalid("`cursor` is not one this API gave"))?,
            ),
            (None, None) => None,
        };
        let (entries, next) = s.audit.query(&AuditFilter {
            key_id: q.key_id,
            request_id: q.request_id,
            operation: q.operation,
            after_seq: after,
            limit: q.limit.unwrap_or(100),
        })?;
        Ok((200, json!({"entries": entries, "next_cursor": next})))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, description = "chain check", body = AuditVerify), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn audit_verify(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let r = (|| {
        require_role(&caller.client, &[Role::Auditor, Role::Admin])?;
        let report = s.audit.verify()?;
        Ok((200, report.to_json()))
    })();
    answer(r)
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/move", tag = "keys", params(("key_id" = String, Path, description = "key id")), request_body = crate::repair::MoveBody, responses((status = 200, description = "the key re-shared onto its holders with `to` in place of `from` (same public key, a new generation); `from` erases its shard (admin; audited KEY_MOVE)", body = KeyRecord), (status = 404, description = "KEY_NOT_FOUND", body = ErrorBody), (status = 409, description = "INVALID_TRANSITION: a CGGMP21 key, or another operation on the key in progress", body = ErrorBody), (status = 503, description = "NODES_UNAVAILABLE: every holder after the move must be up", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn move_key(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    answer(s.move_key(&caller, &key_id, &body).await)
}

#[utoipa::path(post, path = "/api/v1/nodes/{node_id}/repair", tag = "nodes", params(("node_id" = u16, Path, description = "node id")), responses((status = 202, description = "the repair started: every shard the node should hold and does not hold at the key's generation is rebuilt from the other holders, in the background (admin; audited NODE_REPAIR, KEY_REPAIR); progress in GET /api/v1/nodes"), (status = 409, description = "a repair of the node is already running", body = ErrorBody), (status = 503, description = "NODES_UNAVAILABLE: the node is down", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn repair_node(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    Path(node_id): Path<u16>,
) -> Response {
    answer(s.repair_node(&caller, node_id).await)
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, description = "every node of the group: up or down, shard count, key ids, bans, version (asked now), generation lag (keys it should hold at another generation or not at all), its last backup (`at`, and whether it is `current`: the node holds exactly the generations it holds), the last repair's progress", body = NodeList), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn nodes(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(e) = require_role(&caller.client, &[Role::Auditor, Role::Admin]) {
        return answer(Err(e));
    }
    let nodes = s.coord.nodes_status().await;
    let mut sync = s.node_sync().await;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            let id = n.id;
            let mut v = serde_json::to_value(n).unwrap_or_default();
            let (lag, backup) = match sync.remove(&id) {
                Some(n) => (n.lag, n.backup),
                None => (None, Value::Null),
            };
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "generation_lag".into(),
                    serde_json::to_value(lag).unwrap_or_default(),
                );
                o.insert("backup".into(), backup);
                o.insert(
                    "repair".into(),
                    serde_json::to_value(s.repairs.get(id)).unwrap_or_default(),
                );
            }
            v
        })
        .collect();
    answer(Ok((200, json!({ "nodes": nodes }))))
}

#[utoipa::path(get, path = "/api/v1/audit/reconcile", tag = "audit", responses((status = 200, description = "the host log against every node's signing journal: `ok`, `signatures_in_journals`, `missing_from_log`"), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn audit_reconcile(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let r = async {
        require_role(&caller.client, &[Role::Auditor, Role::Admin])?;
        Ok((200, s.reconcile().await?))
    }
    .await;
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "admin", responses((status = 200, description = "loaded plugins"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn plugins(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let r = (|| {
        require_role(&caller.client, &[Role::Admin])?;
        let list: Vec<Value> = s
            .runtime
            .plugins()
            .map(|p| {
                json!({"name": p.name, "version": p.info.version, "chain_family": p.info.chain_family,
                    "networks": p.info.networks, "curve": p.info.curve.as_str(),
                    "schemes": p.info.schemes.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                    "wit_version": p.wit_version, "sha256": p.sha256})
            })
            .collect();
        Ok((200, json!({"plugins": list})))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/policies", tag = "admin", responses((status = 200, description = "policies in force"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let r = (|| {
        require_role(&caller.client, &[Role::Admin])?;
        let snap = s.policy.snapshot();
        let list: Vec<Value> = snap
            .policy_ids()
            .map(|id| json!({"id": id, "file": snap.file_of(id)}))
            .collect();
        Ok((200, {
            let mut v = s.policy_source.describe();
            v["count"] = json!(list.len());
            v["policies"] = json!(list);
            v
        }))
    })();
    answer(r)
}

#[utoipa::path(post, path = "/api/v1/policies/validate", tag = "admin", responses((status = 200, description = "whether the policy folder validates (nothing is put in force)"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies_validate(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let r = (|| {
        require_role(&caller.client, &[Role::Admin])?;
        match s.policy_source.validate() {
            Ok(n) => Ok((200, json!({"valid": true, "policies": n}))),
            Err(e) => Ok((
                200,
                json!({"valid": false, "error": one_line(&e.to_string())}),
            )),
        }
    })();
    answer(r)
}

#[utoipa::path(post, path = "/api/v1/policies/reload", tag = "admin", responses((status = 200, description = "the new set is in force"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies_reload(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let r = (|| {
        require_role(&caller.client, &[Role::Admin])?;
        s.reload_policies(&caller.client.name, Some(caller.ip))
            .map(|d| (200, d))
    })();
    if r.is_ok() {
        // The nodes decide with the same bundle from now on (each verifies it).
        s.push_bundle().await;
    }
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "this document")))]
pub(crate) async fn openapi() -> Response {
    Json(super::openapi::document()).into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the service is up")))]
pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "enough nodes are up"), (status = 503, description = "not enough nodes")))]
pub(crate) async fn readyz(State(s): State<Arc<Service>>) -> Response {
    let (up, down) = s.survey_nodes().await;
    // Ready when a default key (3 shards) can still be created: 3 nodes up.
    let ready = up.len() >= 3;
    let body = json!({"ready": ready, "nodes_up": up, "nodes_down": down});
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition")))]
pub(crate) async fn metrics(State(s): State<Arc<Service>>, _h: HeaderMap) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

pub(super) async fn not_found() -> Response {
    with_status(
        ApiError::invalid("no such endpoint; see /api/v1/openapi.json"),
        StatusCode::NOT_FOUND,
    )
}

#[utoipa::path(post, path = "/api/v1/policies/replay", tag = "admin", request_body = crate::replay::ReplayBody, responses((status = 200, description = "the recorded sign requests of the period decided again with the candidate set: `decided`, `unchanged`, `changed` (each with the recorded and the candidate decision), `skipped`; nothing is put in force"), (status = 400, description = "invalid request, or the candidate set does not load", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies_replay(
    State(s): State<Arc<Service>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let r = match require_role(&caller.client, &[Role::Admin, Role::Auditor]) {
        Ok(()) => {
            let s = s.clone();
            tokio::task::spawn_blocking(move || s.replay_request(&caller, &body))
                .await
                .unwrap_or_else(|e| Err(ApiError::internal(format!("policy replay stopped: {e}"))))
        }
        Err(e) => Err(e),
    };
    answer(r)
}
