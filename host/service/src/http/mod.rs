//! The REST API of DESIGN §7 over HTTP: the router, `Service::run(listener, shutdown)`,
//! the gate every authenticated route passes (`gate.rs`), the handlers (`routes.rs`) and
//! the OpenAPI document derived from the types the handlers read and answer with
//! (`openapi.rs`).
//!
//! Handlers parse the request, call the service once, and turn the result into an answer;
//! they hold no logic of their own.

mod gate;
mod openapi;
mod routes;

use crate::error::{ApiError, ApiResult};
use crate::service::Service;
use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Bodies over this are refused with 413 (DESIGN §7).
pub const BODY_LIMIT: usize = 256 * 1024;

impl Service {
    /// The router (tests may serve it themselves).
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/api/v1/keys/generate", post(routes::generate))
            .route("/api/v1/keys", get(routes::list_keys))
            .route("/api/v1/keys/{key_id}", get(routes::get_key))
            .route("/api/v1/keys/{key_id}/status", put(routes::set_status))
            .route("/api/v1/keys/{key_id}/sign", post(routes::sign))
            .route("/api/v1/keys/{key_id}/transactions", post(routes::build_tx))
            .route("/api/v1/keys/{key_id}/refresh", post(routes::refresh))
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
            .route("/api/v1/plugins", get(routes::plugins))
            .route("/api/v1/policies", get(routes::policies))
            .route("/api/v1/policies/validate", post(routes::policies_validate))
            .route("/api/v1/policies/reload", post(routes::policies_reload))
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
            .fallback(routes::not_found)
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
        let app = self.router();
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the API");
        let _ = stop.send(true);
        if let Err(e) = background.await {
            tracing::error!(error = %e, "the background duties ended abnormally");
        }
        let _ = self.audit.append(crate::audit::NewEntry::new(
            "SERVICE_STOP",
            crate::audit::AuditResult::Ok,
        ));
        served
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
