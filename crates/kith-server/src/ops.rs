//! Operational endpoints: liveness, readiness and Prometheus metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// Flipped when shutdown starts, so load balancers stop sending before connections close.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the node as draining.
    pub fn draining(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has started; long-lived responses (the debugger stream) end then.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The node takes traffic: its database answers, its writes are not all failing (a full disk
/// answers reads and pings but refuses every write), its background jobs make progress and it
/// is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})));
    }
    if state.pipeline.stats().writer_failing() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "writes failing"})));
    }
    if let Some(quiet) = state.jobs.stalled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "jobs stalled", "seconds_since_progress": quiet.as_secs()})),
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(error) => {
            tracing::warn!(cause = %kith_store::error_chain(&error), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "database unavailable"})))
        }
    }
}

/// The longest a scrape waits for acknowledged events to be counted.
const METRICS_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Prometheus metrics; with a metrics token set, only for `Authorization: Bearer <token>`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(sent.trim().as_bytes().ct_eq(token.as_bytes())) {
            return ApiError::unauthorized("send the metrics token as `Authorization: Bearer <token>`").into_response();
        }
    }
    // Events are counted as the store applies them: let it catch up with what was
    // acknowledged (briefly: a scrape must not hang on a stalled projection).
    let _ = tokio::time::timeout(METRICS_SETTLE, state.store.settle()).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], state.metrics.render()).into_response()
}
