//! `appizer init`: the first organisation, its default project, a write key, an
//! organisation admin key and the first admin member (who signs in to the dashboard),
//! written in one transaction. The keys' plaintext and a generated password exist only
//! in the returned [`InitOutput`], to be shown once.

use appizer_core::member::{
    generate_password, hash_password, normalize_email, Member, MemberAccess,
};
use appizer_core::tenancy::{
    Actor, ApiKey, KeyAccess, KeyGrant, NewAuditEntry, Organization, Project,
};
use appizer_core::{MemberId, OrganizationId, ProjectId, Role};
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
    /// The first admin member's email, to sign in to the dashboard with.
    pub admin_email: String,
    /// Their password when it was generated (shown once); absent when it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
}

/// The first admin member: an email, and a password (else one is generated).
#[derive(Clone)]
pub struct FirstAdmin {
    pub email: String,
    pub password: Option<String>,
}

impl Default for FirstAdmin {
    fn default() -> Self {
        Self {
            email: "admin@localhost".into(),
            password: None,
        }
    }
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
    #[error("the first admin's {0}")]
    Admin(String),
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

/// Writes the first organisation, project, keys and admin member; fails, changing
/// nothing, if the store was initialised before.
pub async fn initialize(
    store: &dyn MetadataStore,
    admin: &FirstAdmin,
) -> Result<InitOutput, InitError> {
    if store.is_initialized().await? {
        return Err(InitError::AlreadyInitialized);
    }
    let email = normalize_email(&admin.email)
        .map_err(|e| InitError::Admin(format!("email (--admin-email) {e}")))?;
    let generated = admin.password.is_none().then(generate_password);
    let password = admin
        .password
        .clone()
        .or(generated.clone())
        .unwrap_or_default();
    let password_hash = hash_password(&password)
        .map_err(|e| InitError::Admin(format!("password (APPIZER_ADMIN_PASSWORD) {e}")))?;
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
            "admin_member": email,
        }),
        request_id: None,
        at: now,
    };
    let (mut overview_definitions, dashboard) =
        appizer_analytics::insight::overview(project.id, now);
    overview_definitions.push(dashboard);
    let member = Member {
        id: MemberId::new(),
        organization_id: organization.id,
        email: email.clone(),
        name: "Admin".into(),
        access: MemberAccess {
            organization_role: Some(Role::Admin),
            projects: Default::default(),
        },
        password_hash,
        created_at: now,
        updated_at: now,
    };
    let output = InitOutput {
        organization_id: organization.id,
        project_id: project.id,
        write_key: write_plain,
        admin_key: admin_plain,
        admin_email: email,
        admin_password: generated,
    };
    store
        .bootstrap(&Bootstrap {
            organization,
            project,
            keys: vec![write_key, admin_key],
            members: vec![member],
            definitions: overview_definitions,
            audit,
        })
        .await?;
    Ok(output)
}

impl InitOutput {
    /// The human-readable announcement of the new keys and the dashboard's sign-in.
    pub fn to_text(&self, base_url: &str) -> String {
        let password = match &self.admin_password {
            Some(p) => format!("{p}   (shown once; change it after signing in)"),
            None => "as given in APPIZER_ADMIN_PASSWORD".into(),
        };
        format!(
            "\
Appizer is initialised. These keys are shown once; store them now.

  organization id  {org}
  project id       {project}
  write key        {write}   (ingestion only; safe to ship in apps)
  admin key        {admin}   (organisation admin; keep it secret)

Sign in to the dashboard at {base_url}/
  email            {email}
  password         {password}

Try the API:
  curl -H 'Authorization: Bearer {admin}' {base_url}/api/v1/projects
",
            org = self.organization_id,
            project = self.project_id,
            write = self.write_key,
            admin = self.admin_key,
            email = self.admin_email,
        )
    }
}
