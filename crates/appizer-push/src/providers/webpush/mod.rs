//! Web Push (RFC 8030, with RFC 8291 encryption and RFC 8292 VAPID): the provider that
//! reaches browsers through their vendors' push services.
//!
//! In place: subscriptions checked at registration (`subscription`), the endpoint rule
//! that keeps pushes on hosts the operator allowed (`config`), message encryption and
//! its receiving side (`crypto`), VAPID signing and checking (`vapid`), and one delivery
//! as an HTTP request with the meaning of its answer (`request`). Sending, with retries
//! and bounded concurrency, belongs to the outbox.

pub mod config;
pub mod crypto;
pub mod errors;
pub mod payload;
pub mod request;
pub mod sender;
pub mod subscription;
#[cfg(test)]
mod tests;
pub mod vapid;

pub use config::WebPushConfig;
pub use errors::WebPushError;
pub use subscription::Subscription;
pub use vapid::VapidKey;
