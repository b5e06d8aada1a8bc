//! [`ProjectScope`]: the one key to a project's data.
//!
//! Every storage method that reads or writes one project's rows takes a scope, and only
//! the metadata store makes one, by reading the project:
//! - [`MetadataStore::get_project`](crate::MetadataStore::get_project) with the
//!   caller's organisation: a request gets its scope this way, so a handler can reach
//!   only a project its organisation owns;
//! - [`MetadataStore::project_scope`](crate::MetadataStore::project_scope) with the
//!   project alone, for background work on data already in the project (the workers'
//!   events, scheduled segment refreshes): it reads the project's organisation.
//!
//! The fields are private and there is no other constructor, so a scope always names a
//! project together with the organisation that owns it.

use appizer_core::{OrganizationId, ProjectId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectScope {
    organization: OrganizationId,
    project: ProjectId,
}

impl ProjectScope {
    /// Only the store's lookups call this, with ids read together from one row.
    pub(crate) fn verified(organization: OrganizationId, project: ProjectId) -> Self {
        Self {
            organization,
            project,
        }
    }

    /// A scope of `project` in some organisation, for this crate's unit tests of
    /// stores that never read the projects table.
    #[cfg(test)]
    pub(crate) fn for_tests(project: ProjectId) -> Self {
        Self::verified(OrganizationId::new(), project)
    }

    pub fn organization(&self) -> OrganizationId {
        self.organization
    }

    pub fn project(&self) -> ProjectId {
        self.project
    }
}

impl std::fmt::Display for ProjectScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.organization, self.project)
    }
}
