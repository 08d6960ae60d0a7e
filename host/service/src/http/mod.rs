//! The REST API of DESIGN §7 over HTTP: the router, `Service::run(listener, shutdown)`,
//! the gate every authenticated route passes (`gate.rs`), the handlers (`routes.rs`) and
//! the OpenAPI document derived from the types the handlers read and answer with
//! (`openapi.rs`).
//!
//! Handlers parse the request, call the service once, and turn the result into an answer;
//! they hold no logic of their own.
//!
//! Abuse limits (`config::Limits`): at most `max_connections` connections are served at
//! once (beyond it new ones wait in the listen backlog, not accepted); a connection that
//! takes longer than `header_read_timeout_ms` to send a request's headers, or stays idle
//! that long between requests, is closed; a body slower than `body_read_timeout_ms` is
//! answered 408 (`gate.rs`); every request first passes its source's buckets (`gate.rs`),
//! and a source shut out for its failed authentications has its new connections held
//! unread until it may send again, then closed.
//! The API is served over HTTP/1.1 only, where those timeouts hold.

mod gate;
mod openapi;
mod routes;

use crate::error::{ApiError, ApiResult};
use crate::service::Service;
use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Bodies over this are refused with 413 (DESIGN §7).
pub const BODY_LIMIT: usize = 256 * 1024;

/// Connections of shut-out sources held unread at once (see `Service::serve`).
const TARPIT_MAX: usize = 1024;
/// The longest a shut-out source's connection is held.
const TARPIT_SECS: u64 = 10;

impl Service {
    /// The router (tests may serve it themselves).
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/api/v1/keys/generate", post(routes::generate))
            .route("/api/v1/keys", get(routes::list_keys))
            .route("/api/v1/keys/{key_id}", get(routes::get_key))
            .route("/api/v1/keys/{key_id}/status", put(routes::set_status))
            .route("/api/v1/keys/{key_id}/tags", put(routes::set_tags))
            .route("/api/v1/keys/{key_id}/sign", post(routes::sign))
            .route("/api/v1/keys/{key_id}/transactions", post(routes::build_tx))
            .route("/api/v1/keys/{key_id}/refresh", post(routes::refresh))
            .route("/api/v1/keys/{key_id}/move", post(routes::move_key))
            .route("/api/v1/requests/{request_id}", get(routes::get_request))
            .route(
                "/api/v1/requests/{request_id}/approve",
                post(routes::approve),
            )
            .route("/api/v1/requests/{request_id}/reject", post(routes::reject))
            .route("/api/v1/audit", get(routes::audit_list))
            .route("/api/v1/audit/verify", get(routes::audit_verify))
            .route("/api/v1/audit/reconcile", get(routes::audit_reconcile))
            .route("/api/v1/nodes", get(routes::nodes))
            .route("/api/v1/nodes/{node_id}/repair", post(routes::repair_node))
            .route("/api/v1/plugins", get(routes::plugins))
            .route("/api/v1/policies", get(routes::policies))
            .route("/api/v1/policies/validate", post(routes::policies_validate))
            .route("/api/v1/policies/reload", post(routes::policies_reload))
            .route("/api/v1/policies/replay", post(routes::policies_replay))
            .route_layer(middleware::from_fn_with_state(self.clone(), gate::gate));
        let open = Router::new()
            .route("/api/v1/openapi.json", get(routes::openapi))
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .route("/metrics", get(routes::metrics))
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                gate::count_only,
            ));
        api.merge(open)
            .fallback(gate::unmatched)
            .layer(middleware::from_fn_with_state(
                self.clone(),
                gate::per_source,
            ))
            .with_state(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` resolves, then drains in-flight
    /// requests, stops the background duties (letting a step under way finish) and
    /// writes SERVICE_STOP.
    pub async fn run(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let background = tokio::spawn(self.clone().background(stopped));
        let served = self.clone().serve(listener, shutdown).await;
        let _ = stop.send(true);
        if let Err(e) = background.await {
            tracing::error!(error = %e, "the background duties ended abnormally");
        }
        self.write_auth_failures(None);
        let _ = self.audit.append(crate::audit::NewEntry::new(
            "SERVICE_STOP",
            crate::audit::AuditResult::Ok,
        ));
        served
    }

    /// Accepts connections while fewer than `max_connections` are open, serves each over
    /// HTTP/1.1 with the header read timeout, and once `shutdown` resolves stops
    /// accepting, lets every connection finish its request under way, and returns.
    async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Far beyond any file-descriptor limit; keeps the count a u32 for the drain below.
        const MOST: u32 = 1 << 24;
        let all_slots = u32::try_from(self.limits.max_connections)
            .unwrap_or(MOST)
            .clamp(1, MOST);
        let max = all_slots as usize;
        let slots = Arc::new(Semaphore::new(max));
        let header_timeout = Duration::from_millis(self.limits.header_read_timeout_ms.max(1));
        let app = self.router();
        let (closing, close) = watch::channel(false);
        let tarpit = Arc::new(Semaphore::new(TARPIT_MAX));
        tokio::pin!(shutdown);
        loop {
            // A free slot first: beyond the cap, connections stay in the listen backlog.
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s.context("the connection slots closed")?,
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment, do not spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // A source shut out for its failed authentications gets nothing, not even a
            // parsed request: its connection is held, unread, until the source may send
            // again (at most `TARPIT_SECS`), then closed. Held, it costs a socket and a
            // sleeping task, and the sender waits instead of reconnecting at once; past
            // `TARPIT_MAX` held connections the rest are closed at once.
            if let Some(wait) = self.ip_limiter.shut_out(peer.ip()) {
                drop(slot);
                if let Ok(held) = tarpit.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(wait.min(TARPIT_SECS))).await;
                        drop((stream, held));
                    });
                }
                continue;
            }
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let mut close = close.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    _ = close.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        drop(listener);
        let _ = closing.send(true);
        // Every connection holds a slot until it is done.
        let _ = slots.acquire_many(all_slots).await;
        Ok(())
    }
}

/// A service result as an HTTP answer.
fn answer(r: ApiResult<(u16, Value)>) -> Response {
    match r {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            Json(body),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `e` answered with another status than its code's (404 for an unknown route).
fn with_status(e: ApiError, s: StatusCode) -> Response {
    let mut r = e.into_response();
    *r.status_mut() = s;
    r
}
