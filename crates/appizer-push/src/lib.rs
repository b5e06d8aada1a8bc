//! Push notification service: APNs, FCM and Web Push delivery, the delivery outbox and
//! delivery tracking; campaigns build on it.
//!
//! In place so far: the registration rules of devices (`devices`), provider
//! credentials sealed under the master key (`credentials`) and the Web Push provider's
//! protocol core (`providers::webpush`).

pub mod credentials;
pub mod devices;
pub mod emulator;
pub mod providers;
