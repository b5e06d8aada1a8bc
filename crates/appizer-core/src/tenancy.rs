//! Tenancy records: organisations, projects, API keys and audit entries, as the metadata
//! store keeps them and the management API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, MemberId, OrganizationId, ProjectId};
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

/// At most `max` push messages of campaigns to one person in any `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCapSetting {
    /// 1 to 1000.
    pub max: u32,
    /// 1 second to 30 days.
    pub window_seconds: u64,
}

impl FrequencyCapSetting {
    /// The field at fault and its rule, if any.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1000).contains(&self.max) {
            return Err(("frequency_cap.max", "must be 1 to 1000".into()));
        }
        if !(1..=30 * 24 * 3600).contains(&self.window_seconds) {
            return Err((
                "frequency_cap.window_seconds",
                "must be 1 to 2592000 (30 days)".into(),
            ));
        }
        Ok(())
    }
}

/// Settings a project carries beyond its name, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSettings {
    #[serde(default)]
    pub rate_limit: RateLimitOverride,
    /// Campaign messages per person across campaigns (none: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_cap: Option<FrequencyCapSetting>,
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
    /// What the key opens: a write key always has its project, a secret key its role.
    pub access: KeyAccess,
    pub name: String,
    /// The first characters of the key, to recognise it in a list.
    pub display_prefix: String,
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<KeyId>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a key opens, one variant per kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// A write key (`apz_wk_`): ingestion into its project, nothing else.
    Write { project: ProjectId },
    /// A secret key (`apz_sk_`) of one project, with a role there.
    ProjectSecret { project: ProjectId, role: Role },
    /// A secret key of the whole organisation, with a role in every project.
    OrganizationSecret { role: Role },
}

impl KeyAccess {
    /// The access of stored parts; `None` for a combination no key can have (a write
    /// key without a project or with a role, a secret key without a role).
    pub fn from_parts(
        kind: KeyKind,
        project: Option<ProjectId>,
        role: Option<Role>,
    ) -> Option<Self> {
        match (kind, project, role) {
            (KeyKind::Write, Some(project), None) => Some(Self::Write { project }),
            (KeyKind::Secret, Some(project), Some(role)) => {
                Some(Self::ProjectSecret { project, role })
            }
            (KeyKind::Secret, None, Some(role)) => Some(Self::OrganizationSecret { role }),
            _ => None,
        }
    }

    pub fn kind(self) -> KeyKind {
        match self {
            Self::Write { .. } => KeyKind::Write,
            Self::ProjectSecret { .. } | Self::OrganizationSecret { .. } => KeyKind::Secret,
        }
    }

    /// The key's project; `None` for an organisation-wide key.
    pub fn project(self) -> Option<ProjectId> {
        match self {
            Self::Write { project } | Self::ProjectSecret { project, .. } => Some(project),
            Self::OrganizationSecret { .. } => None,
        }
    }

    /// A secret key's role; `None` for a write key.
    pub fn role(self) -> Option<Role> {
        match self {
            Self::Write { .. } => None,
            Self::ProjectSecret { role, .. } | Self::OrganizationSecret { role } => Some(role),
        }
    }
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    pub fn kind(&self) -> KeyKind {
        self.access.kind()
    }

    /// The key's project; `None` for an organisation-wide key.
    pub fn project_id(&self) -> Option<ProjectId> {
        self.access.project()
    }

    /// A secret key's role; `None` for a write key.
    pub fn role(&self) -> Option<Role> {
        self.access.role()
    }
}

/// Who did a management action: a key, a signed-in team member, or the command line
/// (`appizer init`).
#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    Key(KeyId),
    Member(MemberId),
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
    pub access: KeyAccess,
    pub name: String,
    pub created_by: Option<KeyId>,
}

impl ApiKey {
    /// Generates a key for `grant`: the record to store and the plaintext, shown once.
    pub fn issue(grant: KeyGrant, now: DateTime<Utc>) -> (ApiKey, String) {
        let generated = crate::keys::generate_key(grant.access.kind());
        let key = ApiKey {
            id: KeyId::new(),
            organization_id: grant.organization_id,
            access: grant.access,
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
                access: KeyAccess::OrganizationSecret { role: Role::Admin },
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
    fn stored_parts_make_an_access_only_where_a_key_can_have_them() {
        let p = ProjectId::new();
        let role = Some(Role::Viewer);
        assert_eq!(
            KeyAccess::from_parts(KeyKind::Write, Some(p), None),
            Some(KeyAccess::Write { project: p })
        );
        assert_eq!(
            KeyAccess::from_parts(KeyKind::Secret, Some(p), role).map(KeyAccess::role),
            Some(role)
        );
        assert_eq!(
            KeyAccess::from_parts(KeyKind::Secret, None, role).map(KeyAccess::project),
            Some(None)
        );
        for (kind, project, role) in [
            (KeyKind::Write, None, None),
            (KeyKind::Write, Some(p), role),
            (KeyKind::Secret, Some(p), None),
            (KeyKind::Secret, None, None),
        ] {
            assert_eq!(
                KeyAccess::from_parts(kind, project, role),
                None,
                "{kind:?} {project:?} {role:?}"
            );
        }
    }

    #[test]
    fn timezones_are_iana_names() {
        assert!(is_valid_timezone("Europe/Paris"));
        assert!(is_valid_timezone("UTC"));
        assert!(!is_valid_timezone("Mars/Olympus"));
    }
}
