//! Push notification service: APNs, FCM and Web Push delivery, the delivery outbox and
//! delivery tracking; campaigns build on it.
//!
//! In place so far: the registration rules of devices (`devices`), provider
//! credentials sealed under the master key (`credentials`), each provider's protocol
//! core (`providers::{apns, fcm, webpush}`: tokens, one delivery, its answers) and a
//! Web Push emulator (`emulator`).

pub mod credentials;
pub mod devices;
pub mod emulator;
pub mod message;
pub mod outbox;
pub mod providers;
pub mod transport;
