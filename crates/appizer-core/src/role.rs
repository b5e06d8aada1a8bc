//! Roles of secret keys and the permissions each grants. Routes require a permission
//! (the gateway's access table); this module alone says which role holds which.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role of a secret key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including keys, members, project settings and the audit log.
    Admin,
    /// Campaigns, segments, devices; reads analytics.
    Marketer,
    /// Analytics, segments; reads users.
    Analyst,
    /// Reads only.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Marketer, Role::Analyst, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }

    /// Whether a key with this role may act with `permission`.
    ///
    /// Roles are not a ladder (a marketer sends campaigns, an analyst defines metrics), so
    /// each permission names the roles that hold it.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            ProjectRead | EventsRead | PersonsRead | AnalyticsRead | PushRead | MembersRead => true,
            ProjectWrite | KeysManage | AuditRead | OrganizationManage | PersonsWrite
            | PushProvidersManage | MembersManage => self == Role::Admin,
            MetricsWrite | InsightsWrite => matches!(self, Role::Admin | Role::Analyst),
            SegmentsWrite => matches!(self, Role::Admin | Role::Analyst | Role::Marketer),
            PushWrite | CampaignsWrite => matches!(self, Role::Admin | Role::Marketer),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: expected one of admin, marketer, analyst, viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// What a route needs. New features add variants here and a line in [`Role::grants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read a project's settings and list visible projects.
    ProjectRead,
    /// Change or delete a project.
    ProjectWrite,
    /// Create, list and revoke a project's keys.
    KeysManage,
    /// Read a project's audit log.
    AuditRead,
    /// Read a project's events, live stream, counters and ingestion warnings.
    EventsRead,
    /// Read persons, their distinct ids and merge log.
    PersonsRead,
    /// Create, update, merge, split and delete persons and their distinct ids.
    PersonsWrite,
    /// Run analytics queries (trends, funnels, retention, stickiness, lifecycle, SQL)
    /// and read saved metrics and segments.
    AnalyticsRead,
    /// Create, change and delete custom metrics.
    MetricsWrite,
    /// Create, change and delete saved insights and dashboards.
    InsightsWrite,
    /// Create, change, refresh and delete segments.
    SegmentsWrite,
    /// Read push devices.
    PushRead,
    /// Delete push devices.
    PushWrite,
    /// Create, change, schedule, pause, resume, cancel, delete and test-send campaigns.
    CampaignsWrite,
    /// Set a project's push provider credentials.
    PushProvidersManage,
    /// Organisation-wide actions: create projects, manage organisation keys, read the
    /// organisation's audit log. Needs an organisation-wide key, not a project key.
    OrganizationManage,
    /// List the organisation's team members (and one's own sessions).
    MembersRead,
    /// Invite, change and remove team members, and end their sessions. Organisation-wide.
    MembersManage,
}

impl Permission {
    /// Whether only an organisation-wide key may hold this permission.
    pub fn needs_organization_key(self) -> bool {
        matches!(
            self,
            Permission::OrganizationManage | Permission::MembersManage
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_wire_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_admins_manage_keys_and_everyone_reads_projects() {
        for role in Role::ALL {
            assert!(role.grants(Permission::ProjectRead));
            assert_eq!(role.grants(Permission::KeysManage), role == Role::Admin);
            assert_eq!(role.grants(Permission::AuditRead), role == Role::Admin);
        }
    }
}
