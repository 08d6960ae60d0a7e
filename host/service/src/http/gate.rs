//! What every request passes before its handler: the body limit, authentication (which
//! audits its refusals) and request metrics.

use super::BODY_LIMIT;
use crate::audit::{AuditResult, NewEntry};
use crate::auth::{AuthInput, HEADER_ACCESS_KEY};
use crate::clock;
use crate::error::{ApiError, Code};
use crate::service::{Caller, Service};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into())
}

/// Counts the request in metrics (unauthenticated routes).
pub(super) async fn count_only(
    State(svc): State<Arc<Service>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let route = route_of(&req);
    let resp = next.run(req).await;
    svc.metrics.request(&method, &route, resp.status().as_u16());
    resp
}

/// Body limit, authentication, metrics: every authenticated route passes here. The
/// handler finds the [`Caller`] in the request's extensions.
pub(super) async fn gate(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = route_of(&req);
    let resp = match authenticate(&svc, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => {
            let unread_body = e.code == Code::PayloadTooLarge;
            let mut resp = e.into_response();
            if unread_body {
                // The rest of the body was not read, so this connection cannot carry
                // another request; say so, or a client reusing it gets a reset.
                resp.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    };
    svc.metrics.request(&method, &route, resp.status().as_u16());
    resp
}

async fn authenticate(svc: &Arc<Service>, req: Request) -> Result<Request, ApiError> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("request bodies are limited to {BODY_LIMIT} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > BODY_LIMIT as u64
    {
        return Err(too_large());
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| too_large())?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let now = clock::unix_now();
    let auth = svc.auth.authenticate(
        &AuthInput {
            method: parts.method.as_str(),
            path_and_query: &path_and_query,
            headers: &parts.headers,
            body: &bytes,
            peer_ip: peer,
        },
        now,
    );
    let client = match auth {
        Ok(c) => c,
        Err(e) => {
            if matches!(e.code, Code::Unauthenticated | Code::Forbidden) {
                let principal = parts
                    .headers
                    .get(HEADER_ACCESS_KEY)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(64).collect::<String>());
                let mut entry = NewEntry::new("AUTH_FAILURE", AuditResult::Denied)
                    .client_ip(peer.to_string())
                    .details(json!({"method": parts.method.as_str(), "path": parts.uri.path(), "error": e.message}));
                if let Some(p) = principal {
                    entry = entry.principal(&p);
                }
                let _ = svc.audit.append(entry);
            }
            return Err(e);
        }
    };
    parts.extensions.insert(Caller {
        client,
        ip: peer,
        now,
    });
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
