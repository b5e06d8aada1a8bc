//! `appizer init`: the first organisation, its default project, a write key and an
//! organisation admin key, written in one transaction. The keys' plaintext exists only
//! in the returned [`InitOutput`], to be shown once.

use appizer_core::tenancy::{
    Actor, ApiKey, KeyAccess, KeyGrant, NewAuditEntry, Organization, Project,
};
use appizer_core::{OrganizationId, ProjectId, Role};
use appizer_storage::metadata::Bootstrap;
use appizer_storage::{MetadataStore, StoreError};
use chrono::Utc;
use serde::Serialize;

/// What `init` created; the only place the keys' plaintext appears.
#[derive(Clone, Serialize)]
pub struct InitOutput {
    pub organization_id: OrganizationId,
    pub project_id: ProjectId,
    pub write_key: String,
    pub admin_key: String,
}

impl std::fmt::Debug for InitOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOutput")
            .field("organization_id", &self.organization_id)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("this data directory is already initialised; nothing was changed (its keys were shown when it was created)")]
    AlreadyInitialized,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for InitError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyInitialized => InitError::AlreadyInitialized,
            other => InitError::Store(other),
        }
    }
}

/// Writes the first organisation, project and keys; fails, changing nothing, if the
/// store was initialised before.
pub async fn initialize(store: &dyn MetadataStore) -> Result<InitOutput, InitError> {
    if store.is_initialized().await? {
        return Err(InitError::AlreadyInitialized);
    }
    let now = Utc::now();
    let organization = Organization {
        id: OrganizationId::new(),
        name: "Default organisation".into(),
        created_at: now,
    };
    let project = Project::new(organization.id, "Default project", "UTC", now);
    let (write_key, write_plain) = ApiKey::issue(
        KeyGrant {
            organization_id: organization.id,
            access: KeyAccess::Write {
                project: project.id,
            },
            name: "Default write key".into(),
            created_by: None,
        },
        now,
    );
    let (admin_key, admin_plain) = ApiKey::issue(
        KeyGrant {
            organization_id: organization.id,
            access: KeyAccess::OrganizationSecret { role: Role::Admin },
            name: "Organisation admin key".into(),
            created_by: None,
        },
        now,
    );
    let audit = NewAuditEntry {
        organization_id: organization.id,
        project_id: Some(project.id),
        actor: Actor::Cli,
        action: "installation.init".into(),
        target_type: "organization".into(),
        target_id: organization.id.to_string(),
        details: serde_json::json!({
            "project_id": project.id,
            "write_key_id": write_key.id,
            "admin_key_id": admin_key.id,
        }),
        request_id: None,
        at: now,
    };
    let output = InitOutput {
        organization_id: organization.id,
        project_id: project.id,
        write_key: write_plain,
        admin_key: admin_plain,
    };
    store
        .bootstrap(&Bootstrap {
            organization,
            project,
            keys: vec![write_key, admin_key],
            audit,
        })
        .await?;
    Ok(output)
}

impl InitOutput {
    /// The human-readable announcement of the new keys.
    pub fn to_text(&self, base_url: &str) -> String {
        format!(
            "\
Appizer is initialised. These keys are shown once; store them now.

  organization id  {org}
  project id       {project}
  write key        {write}   (ingestion only; safe to ship in apps)
  admin key        {admin}   (organisation admin; keep it secret)

Try it:
  curl -H 'Authorization: Bearer {admin}' {base_url}/api/v1/projects
",
            org = self.organization_id,
            project = self.project_id,
            write = self.write_key,
            admin = self.admin_key,
        )
    }
}
