//! Push notification service: APNs, FCM and Web Push delivery, the delivery outbox and
//! delivery tracking; campaigns build on it.
//!
//! In place so far: the registration rules of devices (`devices`) and the Web Push
//! provider's protocol core (`providers::webpush`).

pub mod devices;
pub mod providers;
