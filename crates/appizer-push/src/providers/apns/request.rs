//! One APNs delivery as HTTP/2: `POST /3/device/<token>` with the provider token and
//! the `apns-*` headers, and what the answer means (Apple's documented reasons).

use http::{HeaderMap, Method, Request, StatusCode};
use serde::Deserialize;

use super::errors::ApnsError;

/// The largest payload APNs takes for an alert.
pub const MAX_PAYLOAD: usize = 4096;

/// How to deliver one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// The bundle id.
    pub topic: String,
    /// `alert`, `background`, ...
    pub push_type: String,
    /// 10 (now), 5 (power-saving) or 1 (lowest).
    pub priority: u8,
    /// Until when APNs keeps trying (seconds since the epoch; 0: once).
    pub expiration: i64,
    pub collapse_id: Option<String>,
    /// The delivery id, so a retry is recognisable.
    pub apns_id: uuid::Uuid,
}

/// The request for `payload` to device `token` on the APNs host `base` (no trailing
/// slash), authorised by `provider_token`.
pub fn build(
    base: &str,
    token: &str,
    provider_token: &str,
    headers: &Headers,
    payload: Vec<u8>,
) -> Result<Request<Vec<u8>>, ApnsError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApnsError::BadToken);
    }
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(ApnsError::PayloadSize {
            bytes: payload.len(),
            most: MAX_PAYLOAD,
        });
    }
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/3/device/{}", token.to_ascii_lowercase()))
        .header("authorization", format!("bearer {provider_token}"))
        .header("apns-topic", &headers.topic)
        .header("apns-push-type", &headers.push_type)
        .header("apns-priority", headers.priority.to_string())
        .header("apns-expiration", headers.expiration.to_string())
        .header("apns-id", headers.apns_id.hyphenated().to_string());
    if let Some(collapse) = &headers.collapse_id {
        if collapse.len() > 64 {
            return Err(ApnsError::CollapseId);
        }
        request = request.header("apns-collapse-id", collapse);
    }
    request.body(payload).map_err(|_| ApnsError::BadToken)
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// The token is dead or not this app's: never send to it again.
    Retire {
        reason: String,
    },
    /// The provider token expired: renew it, then send again.
    RenewToken,
    /// Try again later (429, 500, 503).
    Retry {
        reason: String,
    },
    /// This notification cannot be delivered as it is.
    Fail {
        reason: String,
    },
}

#[derive(Deserialize)]
struct Body {
    reason: String,
}

/// The outcome of an answer with `status` and JSON `body` (`{"reason": ...}`).
pub fn classify(status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Accepted;
    }
    let reason = serde_json::from_slice::<Body>(body)
        .map(|b| b.reason)
        .unwrap_or_else(|_| status.as_u16().to_string());
    match (status.as_u16(), reason.as_str()) {
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Outcome::Retire { reason },
        (403, "ExpiredProviderToken") => Outcome::RenewToken,
        (429 | 500 | 503, _) => Outcome::Retry { reason },
        _ => Outcome::Fail { reason },
    }
}
