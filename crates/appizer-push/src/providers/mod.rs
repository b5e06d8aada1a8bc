//! The push providers, one folder each in the connector shape of `ARCHITECTURE.md`:
//! `config` (where requests go), `errors` (its own failures), `payload` (a message as
//! it takes one), `request` (one delivery as HTTP and the meaning of its answer),
//! `sender` (credentials loaded, one delivery sent over the shared transport), `tests`.

pub mod apns;
pub mod fcm;
pub mod webpush;

use std::time::Duration;

use appizer_core::push::WebKeys;
use http::HeaderMap;

/// What became of one attempt, in every provider's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    /// The device is gone or not this sender's: never send to it again.
    Retire(String),
    /// Try again later, no sooner than `after` when the provider said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Undeliverable as it is; trying again would not help.
    Fail(String),
}

/// The device one delivery goes to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The APNs or FCM token, or the Web Push endpoint.
    pub address: &'a str,
    pub web_keys: Option<&'a WebKeys>,
    /// The same for every attempt of this delivery (APNs' `apns-id`).
    pub delivery_id: uuid::Uuid,
}

/// Credentials that do not load into a sender (named in the failed deliveries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} credentials cannot be used: {reason}")]
pub struct Unusable {
    pub provider: &'static str,
    pub reason: String,
}

/// `Retry-After` in seconds, when an answer has one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
