//! Shared vocabulary of Appizer: ids, tenancy records, roles and permissions, API keys,
//! team members and their sessions,
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
pub mod member;
pub mod person;
pub mod push;
pub mod role;
pub mod secret;
pub mod tenancy;

pub use error_code::ErrorCode;
pub use ids::{
    CampaignId, DefinitionId, DeviceId, InviteId, KeyId, MemberId, MergeId, MessageId,
    OrganizationId, PersonId, ProjectId, SessionId,
};
pub use role::{Permission, Role};
