//! Push notification service: APNs, FCM and Web Push delivery, the delivery outbox and
//! delivery tracking; campaigns build on it.
//!
//! In place so far: the Web Push provider's protocol core (`providers::webpush`).

pub mod providers;
