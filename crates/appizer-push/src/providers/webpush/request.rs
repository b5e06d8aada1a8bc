//! One Web Push delivery as HTTP (RFC 8030): the request to a subscription's endpoint,
//! and what its answer means. Transport-free: the caller sends the request.
//!
//! Answers (the push services' documented statuses): 201 accepted; 404 and 410 the
//! subscription is gone (retire the device); 429 and 5xx try again later (after
//! `Retry-After` when given); 413 the body is too large (never retried); 400, 401 and
//! 403 a request this server built wrongly (fail, no retry).

use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, Request, StatusCode};

use super::errors::WebPushError;
use super::subscription::Subscription;
use super::vapid::VapidKey;

/// How soon a push service should deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// What to send besides the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long the push service keeps the message for an offline browser (seconds).
    pub ttl: u32,
    pub urgency: Urgency,
    /// A message with the same topic replaces an undelivered one (at most 32
    /// base64url characters).
    pub topic: Option<String>,
}

/// The request delivering `payload` to `subscription`, signed by `vapid` for `subject`
/// at `now` (seconds since the epoch).
pub fn build(
    subscription: &Subscription,
    payload: &[u8],
    vapid: &VapidKey,
    subject: &str,
    options: &Options,
    now: i64,
) -> Result<Request<Vec<u8>>, WebPushError> {
    let authorization = vapid.authorization(&subscription.endpoint, subject, now)?;
    build_authorized(subscription, payload, &authorization, options)
}

/// The request delivering `payload` to `subscription` with a VAPID `authorization`
/// made earlier for the endpoint's origin (one is valid for hours: senders reuse it).
pub fn build_authorized(
    subscription: &Subscription,
    payload: &[u8],
    authorization: &str,
    options: &Options,
) -> Result<Request<Vec<u8>>, WebPushError> {
    if let Some(topic) = &options.topic {
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if topic.is_empty() || topic.len() > 32 || !topic.bytes().all(base64url) {
            return Err(WebPushError::Malformed(
                "a topic is 1 to 32 base64url characters",
            ));
        }
    }
    let body = subscription.seal(payload)?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(&subscription.endpoint)
        .header(CONTENT_ENCODING, "aes128gcm")
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("ttl", options.ttl.to_string())
        .header("urgency", options.urgency.as_str())
        .header(AUTHORIZATION, authorization);
    if let Some(topic) = &options.topic {
        request = request.header("topic", topic);
    }
    request
        .body(body)
        .map_err(|_| WebPushError::BadEndpoint("is not a valid request URI"))
}

/// What an answer means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// The subscription no longer exists: never send to it again.
    Retire {
        reason: String,
    },
    /// Try again, no sooner than `after` when the service said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// This message cannot be delivered as it is; trying again would not help.
    Fail {
        reason: String,
    },
}

/// The outcome of an answer with `status` and `headers`.
pub fn classify(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let reason = |what: &str| format!("{} {what}", status.as_u16());
    match status.as_u16() {
        200..=299 => Outcome::Accepted,
        404 | 410 => Outcome::Retire {
            reason: reason("subscription gone"),
        },
        429 | 500..=599 => Outcome::Retry {
            after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            reason: reason(if status == StatusCode::TOO_MANY_REQUESTS {
                "throttled"
            } else {
                "push service error"
            }),
        },
        413 => Outcome::Fail {
            reason: reason("payload too large"),
        },
        _ => Outcome::Fail {
            reason: reason("refused"),
        },
    }
}
