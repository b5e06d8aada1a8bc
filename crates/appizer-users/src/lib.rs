//! User service: persons, distinct ids, identity resolution, aliases, merges and splits,
//! and profiles that fill themselves in from the events. The rules are in
//! [`identity`]; the storage is `appizer_storage::persons`.

pub mod cache;
pub mod identity;

pub use identity::{CacheStats, Identity, IdentityConfig, IdentityWarning, Resolution};
