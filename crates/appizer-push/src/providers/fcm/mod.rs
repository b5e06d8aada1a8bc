//! FCM HTTP v1: the provider that reaches Android devices (one request per token).
//!
//! In place: where requests go (`config`), the service account's access token
//! (`token`), and one delivery as a request with the meaning of its answer
//! (`request`). Sending and retries belong to the outbox.

pub mod config;
pub mod errors;
pub mod payload;
pub mod request;
pub mod sender;
#[cfg(test)]
mod tests;
pub mod token;

pub use config::FcmConfig;
pub use errors::FcmError;
pub use token::{AccessTokens, ServiceAccount};
