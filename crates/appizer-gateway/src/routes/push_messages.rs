//! The send API: `POST /api/v1/projects/{project_id}/push/messages` queues a message to
//! persons, distinct ids, devices or a segment and answers 202 once every delivery is in
//! the durable outbox; `GET .../push/messages/{message_id}` says how its deliveries
//! stand. What a message must be, and the outbox, are `appizer_push`'s.

use appizer_core::push::{DeliveryCounts, MessageRecord, Platform};
use appizer_core::{MessageId, ProjectId};
use appizer_push::message::SendRequest;
use appizer_push::outbox::SendError;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::CallerProject;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{decode_json, ApiPath};
use crate::state::AppState;

/// Set on the answer to a request whose idempotency key was used before: the first
/// request's answer, nothing queued again.
pub const REPLAYED: &str = "idempotent-replayed";

/// A queued message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageQueued {
    pub message_id: String,
    /// Deliveries queued: one per active device of the audience.
    pub devices: u64,
    /// The platforms it goes to (those asked for that the project has a provider for).
    pub platforms: Vec<Platform>,
    pub created_at: DateTime<Utc>,
}

impl From<&MessageRecord> for MessageQueued {
    fn from(r: &MessageRecord) -> Self {
        Self {
            message_id: r.id.to_string(),
            devices: r.devices,
            platforms: r.platforms.clone(),
            created_at: r.created_at,
        }
    }
}

/// A message and how its deliveries stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageStatus {
    pub message_id: String,
    pub devices: u64,
    pub platforms: Vec<Platform>,
    pub campaign_id: Option<String>,
    pub variant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub counts: DeliveryCounts,
}

fn send_error(e: SendError) -> ApiError {
    match e {
        SendError::Refused(r) => ApiError::invalid(r.field, r.rule),
        SendError::Store(e) => e.into(),
    }
}

/// Send a push notification: to persons, distinct ids, devices or a segment's members,
/// on every platform the project has a provider for (or those named). Answers 202 once
/// one delivery per device is in the durable outbox; the same `idempotency_key` within
/// 24 hours answers the first request again (with `Idempotent-Replayed: true`) and
/// sends nothing. Payloads are checked against each platform's limit first.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/push/messages", tag = "push", operation_id = "send_message",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    request_body = SendRequest,
    responses((status = 202, body = MessageQueued), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let request: SendRequest = decode_json(&body)?;
    // Stored to the millisecond: the answer says what a later read says.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let (record, new) = state
        .push
        .outbox
        .send(scope, request, None, now)
        .await
        .map_err(send_error)?;
    let mut answer = (StatusCode::ACCEPTED, Json(MessageQueued::from(&record))).into_response();
    if !new {
        answer.headers_mut().insert(
            HeaderName::from_static(REPLAYED),
            HeaderValue::from_static("true"),
        );
    }
    Ok(answer)
}

/// A message and its deliveries: counts per state (queued, sent, failed and retired
/// by reason) and per platform.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/push/messages/{message_id}", tag = "push", operation_id = "get_message",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("message_id" = String, Path, format = Uuid)),
    responses((status = 200, body = MessageStatus), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, id)): ApiPath<(ProjectId, MessageId)>,
) -> ApiResult<Json<MessageStatus>> {
    let (record, counts) = state
        .push
        .outbox
        .message(scope, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(MessageStatus {
        message_id: record.id.to_string(),
        devices: record.devices,
        platforms: record.platforms,
        campaign_id: record.campaign_id,
        variant: record.variant,
        created_at: record.created_at,
        counts,
    }))
}
