//! Shared vocabulary of Appizer: ids, tenancy records, roles and permissions, API keys,
//! layered configuration, the closed set of error codes every API answer uses, and the
//! health registry background loops report into.

pub mod config;
pub mod definition;
pub mod error_code;
pub mod event;
pub mod health;
pub mod ids;
pub mod json;
pub mod keys;
pub mod person;
pub mod push;
pub mod role;
pub mod secret;
pub mod tenancy;

pub use error_code::ErrorCode;
pub use ids::{
    CampaignId, DefinitionId, DeviceId, KeyId, MergeId, MessageId, OrganizationId, PersonId,
    ProjectId,
};
pub use role::{Permission, Role};
