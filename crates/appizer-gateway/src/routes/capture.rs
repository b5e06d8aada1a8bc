//! Ingestion routes, authenticated by write key, answered only once the accepted
//! events are durable in the queue.
//!
//! Segment: `POST /v1/track|identify|page|screen|group|alias|batch|import` (write key as
//! HTTP Basic user name or `writeKey` in the body), answered `{"success":true}`.
//! PostHog: `/capture`, `/batch`, `/e`, `/i/v0/e`, `/track`, `/engage`, with or without
//! a trailing slash, POST or GET `?data=` (key in `api_key`, `token` or the events'
//! `properties.token`), answered `{"status":1}`.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use appizer_core::event::{Dialect, MessageType};
use appizer_core::ErrorCode;
use appizer_events::append::append_events;
use appizer_events::capture::body::{decode_body, Encoding};
use appizer_events::capture::{posthog, segment, CaptureError, Decoded, Received};
use appizer_events::metrics as event_metrics;
use appizer_storage::queue::QueueError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, post, MethodFilter};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use crate::auth::{authenticate_write_key, write_key_from_basic, Writer};
use crate::error::ApiError;
use crate::rate_limit::{Decision, LimitClass, Limits};
use crate::state::AppState;

/// The ingestion routes (wrapped in CORS by the caller).
pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for (path, message_type) in [
        ("/v1/track", Some(MessageType::Track)),
        ("/v1/identify", Some(MessageType::Identify)),
        ("/v1/page", Some(MessageType::Page)),
        ("/v1/screen", Some(MessageType::Screen)),
        ("/v1/group", Some(MessageType::Group)),
        ("/v1/alias", Some(MessageType::Alias)),
        ("/v1/batch", None),
        ("/v1/import", None),
    ] {
        router = router.route(
            path,
            post(move |state: State<AppState>, request: Request| {
                capture(state, Dialect::Segment, message_type, request)
            }),
        );
    }
    for path in ["/capture", "/batch", "/e", "/i/v0/e", "/track", "/engage"] {
        for path in [path.to_string(), format!("{path}/")] {
            router = router.route(
                &path,
                on(
                    MethodFilter::POST.or(MethodFilter::GET),
                    |state: State<AppState>, request: Request| {
                        capture(state, Dialect::Posthog, None, request)
                    },
                ),
            );
        }
    }
    router
}

fn capture_error(e: CaptureError) -> ApiError {
    match e {
        CaptureError::Malformed { field, message } => {
            let code = if field == "body" || field == "data" {
                ErrorCode::InvalidJson
            } else {
                ErrorCode::ValidationFailed
            };
            ApiError::new(code, message).with_field(field)
        }
        CaptureError::Invalid { field, message } => ApiError::invalid(field, message),
        CaptureError::TooLarge { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
        .with_field("body"),
        e @ CaptureError::UnsupportedEncoding(_) => {
            ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string())
                .with_field("Content-Encoding")
        }
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the
/// nearest untrusted address of `X-Forwarded-For`.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted.contains(ip))
            .unwrap_or(peer),
    )
}

async fn capture(
    State(state): State<AppState>,
    dialect: Dialect,
    message_type: Option<MessageType>,
    request: Request,
) -> Response {
    match accept(&state, dialect, message_type, request).await {
        Ok(limit) => {
            let mut response = match dialect {
                Dialect::Segment => Json(json!({"success": true})).into_response(),
                Dialect::Posthog => Json(json!({"status": 1})).into_response(),
            };
            limit.write_headers(response.headers_mut());
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Accepts the request's events; answers the key's rate limit state.
async fn accept(
    state: &AppState,
    dialect: Dialect,
    message_type: Option<MessageType>,
    request: Request,
) -> Result<Decision, ApiError> {
    let received_at = Utc::now();
    let limit = state.config.ingest.max_body_bytes;
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = client_ip(peer, &parts.headers, &state.config.ingest.trusted_proxies);
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let query_value = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let raw = match query_value("data").filter(|_| parts.method == axum::http::Method::GET) {
        Some(data) => form_urlencoded::Serializer::new(String::new())
            .append_pair("data", data)
            .finish()
            .into_bytes()
            .into(),
        None => read_body(body, limit).await?,
    };
    let is_get_data = parts.method == axum::http::Method::GET;
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let encoding = Encoding {
        content_encoding: header(CONTENT_ENCODING),
        content_type: if is_get_data {
            Some("application/x-www-form-urlencoded")
        } else {
            header(CONTENT_TYPE)
        },
        compression: query_value("compression"),
    };
    let json = decode_body(&raw, &encoding, limit).map_err(capture_error)?;

    let received_by = |writer: &Writer| Received {
        project_id: writer.scope.project(),
        received_at,
        ip: ip.map(|i| i.to_string()),
    };
    let (writer, limit, decoded) = match dialect {
        Dialect::Segment => {
            let envelope = segment::envelope(&json, message_type).map_err(capture_error)?;
            let key = write_key_from_basic(&parts.headers).or(envelope.write_key.clone());
            let (writer, limit) = authenticate(state, key.as_deref()).await?;
            let decoded = segment::decode(&envelope, message_type, &received_by(&writer));
            (writer, limit, decoded)
        }
        Dialect::Posthog => {
            let envelope = posthog::envelope(&json).map_err(capture_error)?;
            let (writer, limit) = authenticate(state, envelope.api_key.as_deref()).await?;
            let decoded = posthog::decode(&envelope, &received_by(&writer));
            (writer, limit, decoded)
        }
    };
    enqueue(state, &writer, dialect, decoded).await?;
    Ok(limit)
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
        .with_field("body")
    })
}

/// Resolves the write key and spends one ingestion token of its bucket; a refusal
/// carries the bucket's `X-RateLimit-*` headers, like a management one.
pub(crate) async fn authenticate(
    state: &AppState,
    key: Option<&str>,
) -> Result<(Writer, Decision), ApiError> {
    let key = key.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "missing write key: send it as the HTTP Basic user name, `writeKey`, `api_key` or `token`",
        )
        .with_field("writeKey")
    })?;
    let writer = authenticate_write_key(state, key).await?;
    let principal = &writer.principal;
    let limits = Limits::resolve(
        &state.config.rate_limit,
        &principal.rate_limit,
        LimitClass::Ingest,
    );
    let decision = state
        .limiter
        .check(
            principal.limit_id(),
            LimitClass::Ingest,
            limits,
            Instant::now(),
        )
        .await;
    if !decision.allowed {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "ingestion rate limit of {} requests/s (burst {}) exceeded for this key",
                limits.per_second, limits.burst
            ),
        )
        .with_rate_limit(decision));
    }
    Ok((writer, decision))
}

async fn enqueue(
    state: &AppState,
    writer: &Writer,
    dialect: Dialect,
    decoded: Decoded,
) -> Result<(), ApiError> {
    if !decoded.warnings.is_empty() {
        state.events.warnings.record(
            writer.principal.organization_id(),
            writer.scope.project(),
            dialect,
            decoded.warnings,
        );
    }
    if decoded.events.is_empty() {
        return Ok(());
    }
    let count = decoded.events.len() as u64;
    match append_events(&state.events.queue, &decoded.events).await {
        Ok(_) => {
            metrics::counter!(event_metrics::EVENTS_ACCEPTED_TOTAL).increment(count);
            Ok(())
        }
        Err(QueueError::Full { .. }) => Err(ApiError::new(
            ErrorCode::Unavailable,
            "ingestion is over its disk budget; retry later",
        )
        .with_retry_after(5)),
        Err(e) => {
            tracing::error!(error = %e, "cannot append to the event queue");
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "the event queue is unavailable; retry later",
            )
            .with_retry_after(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let peer = SocketAddr::new(proxy, 4000);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 203.0.113.9, 10.0.0.5"),
        );
        assert_eq!(
            client_ip(Some(peer), &headers, &[proxy]),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(peer), &headers, &[]),
            Some(proxy),
            "untrusted peer: header ignored"
        );
        assert_eq!(
            client_ip(Some(peer), &HeaderMap::new(), &[proxy]),
            Some(proxy)
        );
        assert_eq!(client_ip(None, &headers, &[proxy]), None);
    }
}
