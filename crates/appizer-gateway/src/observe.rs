//! The outermost middleware: request id, timeout, HTTP metrics labelled by matched
//! route, and one structured access-log line per request.

use std::time::{Duration, Instant};

use appizer_core::ErrorCode;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::{HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION_SECONDS};
use crate::state::AppState;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request: the caller's `X-Request-Id` if it is sane, else a new UUID v7.
/// Handlers read it from the request extensions (audit entries record it).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn request_id_of(request: &Request) -> String {
    request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&request);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    request.extensions_mut().insert(RequestId(id.clone()));

    let timeout = Duration::from_millis(state.config.server.request_timeout_ms);
    let mut response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Unavailable,
            format!("request took longer than {} ms", timeout.as_millis()),
        )
        .with_retry_after(1)
        .into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER.clone(), value);
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let labels = [("method", method.to_string()), ("route", route.clone())];
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels).record(elapsed.as_secs_f64());
    metrics::counter!(
        HTTP_REQUESTS_TOTAL,
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    tracing::info!(
        target: "appizer::access",
        request_id = %id,
        method = %method,
        route = %route,
        status,
        duration_us = elapsed.as_micros() as u64,
        "request"
    );
    response
}
