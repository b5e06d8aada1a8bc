//! Push notification service: APNs, FCM and Web Push delivery, the delivery outbox and
//! delivery tracking; campaigns build on it.
//!
//! - `devices`: what an app may register, per platform;
//! - `credentials`: provider credentials checked and sealed under the master key;
//! - `message`: the send API's request, checked whole before anything is queued;
//! - `transport`: the one HTTP/2 stack every provider sends on;
//! - `providers::{apns, fcm, webpush}`: tokens, payloads, one delivery and its answer,
//!   and the sender the delivery loop calls;
//! - `outbox`: the fan-out into the durable outbox, the delivery loop, retries, delivery
//!   events and metrics;
//! - `campaign`: campaigns on top of the outbox (A/B assignment, templates and schedules so far);
//! - `emulator`: local APNs, FCM and Web Push services (`appizer push-emulator`).

pub mod campaign;
pub mod credentials;
pub mod devices;
pub mod emulator;
pub mod message;
pub mod outbox;
pub mod providers;
pub mod transport;
