//! APNs (HTTP/2, token-based authentication): the provider that reaches Apple devices.
//!
//! In place: where requests go (`config`), the provider token (`token`) and one delivery as a request with the
//! meaning of its answer (`request`). The HTTP/2 connections, sending and retries
//! belong to the outbox.

pub mod config;
pub mod errors;
pub mod payload;
pub mod request;
pub mod sender;
#[cfg(test)]
mod tests;
pub mod token;

pub use config::ApnsConfig;
pub use errors::ApnsError;
pub use token::ProviderToken;
