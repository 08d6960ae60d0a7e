//! What every request passes before its handler: its source's buckets (before anything
//! is read), the body limit and read timeout, authentication (whose refusals are tallied
//! per source and minute for the audit log, and charged to the source) and request
//! metrics.

use super::{BODY_LIMIT, with_status};
use crate::audit::AuthFailure;
use crate::auth::{AuthInput, HEADER_ACCESS_KEY};
use crate::clock;
use crate::error::{ApiError, Code};
use crate::service::{Caller, Service};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

fn peer_of(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Every request, first: its source's request bucket, and whether its failed
/// authentications spent theirs. Over either, 429 with Retry-After and nothing else
/// done: no header looked at, no body read, no audit entry. A source shut out for its
/// failures also loses the connection (its next ones are held unread, then closed).
pub(super) async fn per_source(
    State(svc): State<Arc<Service>>,
    req: Request,
    next: Next,
) -> Response {
    match svc.ip_limiter.admit(peer_of(&req)) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            // The method is the sender's choice: only the standard ones become labels.
            let method = match req.method().as_str() {
                m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
                _ => "OTHER",
            };
            svc.metrics.request(method, "per_source_limit", 429);
            let retry_after = refusal.retry_after;
            let mut e = ApiError::new(
                Code::RateLimited,
                format!("too many requests from this address; retry after {retry_after} s"),
            );
            e.retry_after = Some(retry_after);
            let mut resp = e.into_response();
            if refusal.shut_out {
                resp.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    }
}

/// A request no route matches: 404, and it counts against its source like a failed
/// authentication (scanning for endpoints is not free either).
pub(super) async fn unmatched(State(svc): State<Arc<Service>>, req: Request) -> Response {
    svc.ip_limiter.failed(peer_of(&req));
    super::routes::not_found().await
}

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
        Err(stop) => {
            let unread_body = !matches!(stop, Stop::Refused(_));
            let mut resp = match stop {
                Stop::Refused(e) | Stop::TooLarge(e) => e.into_response(),
                Stop::SlowBody(e) => with_status(e, StatusCode::REQUEST_TIMEOUT),
            };
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

/// Why a request stops at the gate.
enum Stop {
    Refused(ApiError),
    /// The body is over the limit (and not read to its end).
    TooLarge(ApiError),
    /// The body did not arrive within the read timeout (and was not read to its end).
    SlowBody(ApiError),
}

async fn authenticate(svc: &Arc<Service>, req: Request) -> Result<Request, Stop> {
    let too_large = || {
        Stop::TooLarge(ApiError::new(
            Code::PayloadTooLarge,
            format!("request bodies are limited to {BODY_LIMIT} bytes"),
        ))
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
    let peer = peer_of(&req);
    let (mut parts, body) = req.into_parts();
    let body_timeout = Duration::from_millis(svc.limits.body_read_timeout_ms.max(1));
    let bytes =
        match tokio::time::timeout(body_timeout, axum::body::to_bytes(body, BODY_LIMIT)).await {
            Ok(read) => read.map_err(|_| too_large())?,
            Err(_) => {
                svc.ip_limiter.failed(peer);
                return Err(Stop::SlowBody(ApiError::invalid(format!(
                    "the request body did not arrive within {} ms",
                    body_timeout.as_millis()
                ))));
            }
        };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let now = clock::unix_now();
    let auth = svc.auth.check(
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
        Err(refused) => {
            let e = *refused.error;
            if matches!(e.code, Code::Unauthenticated | Code::Forbidden) {
                svc.ip_limiter.failed(peer);
                let access_key = parts
                    .headers
                    .get(HEADER_ACCESS_KEY)
                    .and_then(|v| v.to_str().ok());
                // Tallied, written once a minute per source (never one write per request).
                svc.auth_failures.record(AuthFailure {
                    ip: peer,
                    at: now,
                    reason: refused.reason,
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    access_key,
                });
            }
            return Err(Stop::Refused(e));
        }
    };
    parts.extensions.insert(Caller {
        client,
        ip: peer,
        now,
    });
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
