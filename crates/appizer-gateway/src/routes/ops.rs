//! Operations endpoints, unauthenticated: `/healthz` (the process answers), `/readyz`
//! (storage answers and no background loop keeps failing; what works degraded is
//! named), `/metrics` (Prometheus text, with each background loop's health).

use appizer_core::ErrorCode;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::metrics::{COMPONENT_DEGRADED, COMPONENT_FAILURES, COMPONENT_HEALTHY};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok`, `ready`, or `degraded` (serving, with what works in a degraded mode
    /// listed in `degraded`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<Degraded>,
}

/// A component serving in a degraded mode.
#[derive(Debug, Serialize, ToSchema)]
pub struct Degraded {
    /// `rate_limit`, ...
    pub component: &'static str,
    /// What is degraded and what the node does meanwhile.
    pub reason: String,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok",
        degraded: Vec::new(),
    })
}

/// The process can serve: its metadata store answers, its event queue takes appends,
/// and no background loop (workers, flush, compaction, segment refresh) keeps failing:
/// a 503 names the first failing one in `field` and its last error in `message`. A
/// component working in a degraded mode (rate limits decided locally while Redis is
/// unreachable) leaves the node ready: `status` is `degraded` and `degraded` says why.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check failed: metadata store");
        return ApiError::new(ErrorCode::Unavailable, "metadata store is not reachable")
            .with_field("metadata_store")
            .with_retry_after(1)
            .into_response();
    }
    if let Err(e) = state.events.queue.ping().await {
        tracing::warn!(error = %e, "readiness check failed: event queue");
        return ApiError::new(ErrorCode::Unavailable, "event queue is not reachable")
            .with_field("event_queue")
            .with_retry_after(1)
            .into_response();
    }
    if let Some(c) = state.events.health.failing().into_iter().next() {
        let why = match &c.last_error {
            Some(e) => format!(
                "{} consecutive failures, the last: {e}",
                c.consecutive_failures
            ),
            None => format!("no report for {} s", c.since_report.as_secs()),
        };
        tracing::warn!(component = c.name, reason = %why, "readiness check failed");
        return ApiError::new(
            ErrorCode::Unavailable,
            format!("background component `{}` is failing: {why}", c.name),
        )
        .with_field(c.name)
        .with_retry_after(5)
        .into_response();
    }
    let degraded: Vec<Degraded> = state
        .events
        .health
        .degraded()
        .into_iter()
        .map(|c| Degraded {
            component: c.name,
            reason: c.degraded.unwrap_or_default(),
        })
        .collect();
    let status = if degraded.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    Json(Status { status, degraded }).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    for c in state.events.health.snapshot() {
        let component = c.name;
        metrics::gauge!(COMPONENT_HEALTHY, "component" => component)
            .set(f64::from(u8::from(c.healthy)));
        metrics::gauge!(COMPONENT_FAILURES, "component" => component)
            .set(f64::from(c.consecutive_failures));
        metrics::gauge!(COMPONENT_DEGRADED, "component" => component)
            .set(f64::from(u8::from(c.degraded.is_some())));
    }
    state.metrics.run_upkeep();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
