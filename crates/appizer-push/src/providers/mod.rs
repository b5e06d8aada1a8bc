//! The push providers, one folder each in the connector shape of `ARCHITECTURE.md`.

pub mod apns;
pub mod fcm;
pub mod webpush;
