//! Real components for tests and benchmarks:
//! - tenants ([`Tenant`]): an organisation and its projects written through the store's
//!   own methods, and their scopes read back by the lookup requests make
//!   ([`MetadataStore::get_project`]). Nothing here makes a scope any other way;
//! - [`s3`]: an S3 emulator of the test's own, and what every event file backend does.

pub mod s3;

use appizer_core::keys::{generate_key, KeyKind};
use appizer_core::tenancy::{
    Actor, ApiKey, KeyAccess, NewAuditEntry, Organization, Project, ProjectSettings,
};
use appizer_core::{KeyId, OrganizationId, ProjectId};
use chrono::Utc;

use crate::metadata::Bootstrap;
use crate::{MetadataStore, ProjectScope, StoreError};

/// An organisation of a store, for adding projects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub organization: OrganizationId,
}

impl Tenant {
    /// Initialises an empty store with an organisation and its first project, `id` in
    /// `timezone`, as `appizer init` does.
    pub async fn create(
        store: &dyn MetadataStore,
        id: ProjectId,
        timezone: &str,
    ) -> Result<(Tenant, ProjectScope, Project), StoreError> {
        let organization = Organization {
            id: OrganizationId::new(),
            name: "Test organisation".into(),
            created_at: Utc::now(),
        };
        let tenant = Tenant {
            organization: organization.id,
        };
        let project = tenant.project(id, "First", timezone);
        store
            .bootstrap(&Bootstrap {
                organization,
                project: project.clone(),
                keys: vec![tenant.write_key(project.id)],
                members: vec![],
                definitions: vec![],
                audit: tenant.audit(project.id, "installation.init"),
            })
            .await?;
        let (scope, project) = tenant.read_back(store, project.id).await?;
        Ok((tenant, scope, project))
    }

    /// Adds a project `id` (with its write key) to the organisation.
    pub async fn add_project(
        &self,
        store: &dyn MetadataStore,
        id: ProjectId,
        timezone: &str,
    ) -> Result<(ProjectScope, Project), StoreError> {
        let project = self.project(id, &format!("Project {id}"), timezone);
        store
            .create_project(
                &project,
                &self.write_key(project.id),
                &[],
                &self.audit(project.id, "project.create"),
            )
            .await?;
        self.read_back(store, project.id).await
    }

    async fn read_back(
        &self,
        store: &dyn MetadataStore,
        id: ProjectId,
    ) -> Result<(ProjectScope, Project), StoreError> {
        store
            .get_project(self.organization, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))
    }

    fn project(&self, id: ProjectId, name: &str, timezone: &str) -> Project {
        let now = Utc::now();
        Project {
            id,
            organization_id: self.organization,
            name: name.into(),
            timezone: timezone.into(),
            settings: ProjectSettings::default(),
            created_at: now,
            updated_at: now,
        }
    }

    fn write_key(&self, project: ProjectId) -> ApiKey {
        let generated = generate_key(KeyKind::Write);
        ApiKey {
            id: KeyId::new(),
            organization_id: self.organization,
            access: KeyAccess::Write { project },
            name: "write key".into(),
            display_prefix: generated.display_prefix,
            key_hash: generated.hash,
            created_at: Utc::now(),
            created_by: None,
            revoked_at: None,
        }
    }

    fn audit(&self, project: ProjectId, action: &str) -> NewAuditEntry {
        NewAuditEntry {
            organization_id: self.organization,
            project_id: Some(project),
            actor: Actor::Cli,
            action: action.into(),
            target_type: "project".into(),
            target_id: project.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: Utc::now(),
        }
    }
}
