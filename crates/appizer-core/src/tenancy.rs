//! Tenancy records: organisations, projects, API keys and audit entries, as the metadata
//! store keeps them and the management API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, OrganizationId, ProjectId};
use crate::keys::KeyKind;
use crate::role::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Per-project overrides of the `[rate_limit]` config; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_burst: Option<u32>,
}

/// Settings a project carries beyond its name, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSettings {
    #[serde(default)]
    pub rate_limit: RateLimitOverride,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: ProjectId,
    pub organization_id: OrganizationId,
    pub name: String,
    /// IANA time zone the project's analytics are evaluated in.
    pub timezone: String,
    pub settings: ProjectSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored API key. The plaintext is never stored, only `key_hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: KeyId,
    pub organization_id: OrganizationId,
    /// `None`: an organisation-wide key (secret keys only).
    pub project_id: Option<ProjectId>,
    pub kind: KeyKind,
    /// The role of a secret key; `None` for write keys.
    pub role: Option<Role>,
    pub name: String,
    /// The first characters of the key, to recognise it in a list.
    pub display_prefix: String,
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<KeyId>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// Who did a management action: a key, or the command line (`appizer init`).
#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    Key(KeyId),
    Cli,
}

/// An audit entry about to be written, in the same transaction as the action.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub organization_id: OrganizationId,
    pub project_id: Option<ProjectId>,
    pub actor: Actor,
    /// Dotted verb, e.g. `project.create`, `key.revoke`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// What changed; never secrets.
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// A written audit entry; `id` increases with time and is the pagination cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub entry: NewAuditEntry,
}

/// Limits of names and time zones a project or key may be given.
pub const MAX_NAME_CHARS: usize = 200;

impl Project {
    /// A new project with default settings.
    pub fn new(
        organization_id: OrganizationId,
        name: impl Into<String>,
        timezone: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: ProjectId::new(),
            organization_id,
            name: name.into(),
            timezone: timezone.into(),
            settings: ProjectSettings::default(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// What a new key needs besides its material.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub organization_id: OrganizationId,
    pub project_id: Option<ProjectId>,
    pub kind: KeyKind,
    pub role: Option<Role>,
    pub name: String,
    pub created_by: Option<KeyId>,
}

impl ApiKey {
    /// Generates a key for `grant`: the record to store and the plaintext, shown once.
    pub fn issue(grant: KeyGrant, now: DateTime<Utc>) -> (ApiKey, String) {
        let generated = crate::keys::generate_key(grant.kind);
        let key = ApiKey {
            id: KeyId::new(),
            organization_id: grant.organization_id,
            project_id: grant.project_id,
            kind: grant.kind,
            role: grant.role,
            name: grant.name,
            display_prefix: generated.display_prefix.clone(),
            key_hash: generated.hash.clone(),
            created_at: now,
            created_by: grant.created_by,
            revoked_at: None,
        };
        (key, generated.plaintext)
    }
}

/// Whether `tz` is an IANA time zone name.
pub fn is_valid_timezone(tz: &str) -> bool {
    tz.parse::<chrono_tz::Tz>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_store_only_the_hash_of_their_plaintext() {
        let org = OrganizationId::new();
        let (key, plaintext) = ApiKey::issue(
            KeyGrant {
                organization_id: org,
                project_id: None,
                kind: KeyKind::Secret,
                role: Some(Role::Admin),
                name: "ops".into(),
                created_by: None,
            },
            Utc::now(),
        );
        assert_eq!(key.key_hash, crate::keys::hash_key(&plaintext));
        assert!(plaintext.starts_with(&key.display_prefix));
        assert!(!format!("{key:?}").contains(&plaintext));
    }

    #[test]
    fn timezones_are_iana_names() {
        assert!(is_valid_timezone("Europe/Paris"));
        assert!(is_valid_timezone("UTC"));
        assert!(!is_valid_timezone("Mars/Olympus"));
    }
}
