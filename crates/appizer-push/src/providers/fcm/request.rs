//! One FCM HTTP v1 delivery: `POST /v1/projects/<project>/messages:send` with the
//! message for one token, and what the answer means (the `errorCode` of the error's
//! `FcmError` detail, else its `status`).

use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// The request sending `message` (the `message` object without `token`) to `token`.
pub fn build(
    base: &str,
    project_id: &str,
    access_token: &str,
    token: &str,
    message: &Value,
) -> Request<Vec<u8>> {
    let mut message = message.clone();
    if let Some(object) = message.as_object_mut() {
        object.insert("token".into(), json!(token));
    }
    Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/projects/{project_id}/messages:send"))
        .header("authorization", format!("Bearer {access_token}"))
        .header("content-type", "application/json")
        .body(json!({ "message": message }).to_string().into_bytes())
        .expect("a base URL from the config and a checked project id")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// The token is dead, invalid or another sender's: never send to it again.
    Retire {
        reason: String,
    },
    /// The access token was refused: get a new one, then send again.
    RenewToken,
    /// Try again, no sooner than `after` when FCM said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    Fail {
        reason: String,
    },
}

/// The error code of an FCM error body.
fn error_code(body: &Value) -> Option<&str> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .or_else(|| body["error"]["status"].as_str())
}

pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Accepted;
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = error_code(&body).unwrap_or("").to_string();
    let message = body["error"]["message"].as_str().unwrap_or("");
    let reason = if code.is_empty() {
        status.as_u16().to_string()
    } else {
        code.clone()
    };
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match (status.as_u16(), code.as_str()) {
        (_, "UNREGISTERED" | "SENDER_ID_MISMATCH") => Outcome::Retire { reason },
        (400, "INVALID_ARGUMENT") if message.contains("registration token") => {
            Outcome::Retire { reason }
        }
        (401, _) | (_, "THIRD_PARTY_AUTH_ERROR" | "UNAUTHENTICATED") => Outcome::RenewToken,
        (429, _) | (500..=599, _) | (_, "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => {
            Outcome::Retry {
                after: retry_after,
                reason,
            }
        }
        _ => Outcome::Fail { reason },
    }
}
