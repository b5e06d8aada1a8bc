//! The one API error type and its one conversion to HTTP:
//! `{"error":{"code","message","field"}}` with the status of the code.

use appizer_core::ErrorCode;
use appizer_storage::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault (`name`, `rate_limit.api_burst`, `Authorization`).
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
    /// The key's rate limit state, answered as `X-RateLimit-*` (and `Retry-After`).
    pub rate_limit: Option<crate::rate_limit::Decision>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            rate_limit: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Answers the rate limit `decision` in headers too; a refusal's `Retry-After`
    /// comes from it.
    pub fn with_rate_limit(mut self, decision: crate::rate_limit::Decision) -> Self {
        self.rate_limit = Some(decision);
        self
    }

    /// A field breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message).with_field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the server log has details",
        )
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of a closed set: invalid_json, validation_failed, payload_too_large,
    /// unsupported_media_type, unauthorized, forbidden, not_found, method_not_allowed,
    /// conflict, rate_limited, unavailable, internal.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        if let Some(decision) = self.rate_limit {
            decision.write_headers(response.headers_mut());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            StoreError::NotFound(message) => ApiError::new(ErrorCode::NotFound, message),
            StoreError::AlreadyInitialized => {
                ApiError::new(ErrorCode::Conflict, "already initialised")
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "metadata store unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "storage is unavailable; retry later",
                )
                .with_retry_after(1)
            }
            other => {
                tracing::error!(error = %other, "metadata store error");
                ApiError::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_render_code_message_field_and_retry_after() {
        let response = ApiError::invalid("name", "must not be empty")
            .with_retry_after(3)
            .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["retry-after"], "3");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error":{"code":"validation_failed","message":"must not be empty","field":"name"}})
        );
    }
}
