//! The metadata store: one trait, chosen by URL at start-up (`sqlite://` or
//! `postgres://`). Every method that touches a project takes the organisation (and,
//! where it applies, the project) so tenant isolation is enforced in the query itself.

mod error;
mod migrations;
mod sql;

pub(crate) use sql::{from_millis, insert_audit, parse_id};

use std::sync::Arc;

use appizer_core::definition::Definition;
use appizer_core::event::{IngestionWarningEntry, NewIngestionWarning};
use appizer_core::tenancy::{ApiKey, AuditEntry, NewAuditEntry, Organization, Project};
use appizer_core::{KeyId, OrganizationId, PersonId, ProjectId};

use crate::scope::ProjectScope;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use error::StoreError;
pub use sql::SqlMetadataStore;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Begins a transaction that writes. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits for another writer (`busy_timeout`) instead of
    /// failing with "database is locked" when it turns from reading to writing after
    /// another connection wrote; on PostgreSQL a plain `BEGIN`.
    pub(crate) async fn begin_write(
        self,
        pool: &sqlx::AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => pool.begin().await,
        }
    }
}

/// What `bootstrap` writes in one transaction: the first organisation, its first
/// project, that project's first keys and the first team members.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub organization: Organization,
    pub project: Project,
    pub keys: Vec<ApiKey>,
    pub members: Vec<appizer_core::member::Member>,
    /// The first project's definitions (its overview dashboard).
    pub definitions: Vec<Definition>,
    pub audit: NewAuditEntry,
}

/// Which keys a listing or revocation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Organisation-wide keys (no project).
    Organization(OrganizationId),
    /// The keys of one project of the organisation.
    Project(OrganizationId, ProjectId),
}

/// Which audit entries a listing addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditScope {
    /// Every entry of the organisation.
    Organization(OrganizationId),
    /// The entries about one project of the organisation.
    Project(OrganizationId, ProjectId),
}

/// A Parquet file of the event store, as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFile {
    /// Relative to the event store's root: `project=<id>/date=<yyyy-mm-dd>/<name>.parquet`.
    pub path: String,
    pub project_id: ProjectId,
    /// The partition's day, `yyyy-mm-dd`.
    pub date: String,
    pub row_count: u64,
    pub byte_size: u64,
    /// Event timestamps in the file, milliseconds since the epoch.
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// The queue partition whose events the file holds (`0` with one partition).
    pub partition: u32,
    /// The highest offset, in its partition, whose events the file holds.
    pub max_queue_offset: u64,
    pub created_at: DateTime<Utc>,
    /// When compaction last rewrote the file with the person overrides (merges,
    /// splits, deletions) of that moment; `None` for a file as flushed.
    pub persons_folded_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// The person store, on the same database.
    fn persons(&self) -> Arc<dyn crate::persons::PersonStore>;

    /// The push store (devices, provider credentials), on the same database.
    fn push(&self) -> Arc<dyn crate::push::PushStore>;

    /// The organisation's team members, their sessions and invitations.
    fn team(&self) -> Arc<dyn crate::team::TeamStore>;

    /// The leases of the event queue's partitions, on the same database.
    fn leases(&self) -> Arc<dyn crate::leases::LeaseStore>;

    /// A number that changes after every write of definitions or segment members
    /// through this store (on this node): answers using them are cached under it.
    fn definitions_version(&self) -> u64;

    /// Saves a new definition of the scope's project, with its audit entry;
    /// [`StoreError::Conflict`] if the project has one of that kind and name, or if the
    /// definition names another project.
    async fn create_definition(
        &self,
        scope: ProjectScope,
        definition: &appizer_core::definition::Definition,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;

    /// The project's definitions of `kind`, by name.
    async fn list_definitions(
        &self,
        scope: ProjectScope,
        kind: appizer_core::definition::DefinitionKind,
    ) -> Result<Vec<appizer_core::definition::Definition>, StoreError>;

    /// Every definition of `kind` in every project (for scheduled refreshes).
    async fn all_definitions(
        &self,
        kind: appizer_core::definition::DefinitionKind,
    ) -> Result<Vec<appizer_core::definition::Definition>, StoreError>;

    async fn get_definition(
        &self,
        scope: ProjectScope,
        kind: appizer_core::definition::DefinitionKind,
        id: appizer_core::DefinitionId,
    ) -> Result<Option<appizer_core::definition::Definition>, StoreError>;

    /// Replaces name, description and body; `false` if the scope's project has no such
    /// definition.
    async fn update_definition(
        &self,
        scope: ProjectScope,
        definition: &appizer_core::definition::Definition,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    /// Deletes a definition (and a segment's members); `false` if it is not there.
    async fn delete_definition(
        &self,
        scope: ProjectScope,
        kind: appizer_core::definition::DefinitionKind,
        id: appizer_core::DefinitionId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    /// Replaces a segment's members in one transaction and records the count and time;
    /// [`StoreError::NotFound`] if the scope's project has no such segment.
    async fn replace_segment_members(
        &self,
        scope: ProjectScope,
        segment: appizer_core::DefinitionId,
        members: &[PersonId],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// A segment's members in id order, after `after`, at most `limit` (none if the
    /// segment is not the scope's project's).
    async fn segment_members(
        &self,
        scope: ProjectScope,
        segment: appizer_core::DefinitionId,
        after: Option<PersonId>,
        limit: u32,
    ) -> Result<Vec<PersonId>, StoreError>;

    async fn is_segment_member(
        &self,
        scope: ProjectScope,
        segment: appizer_core::DefinitionId,
        person: PersonId,
    ) -> Result<bool, StoreError>;

    /// The scope of `project`, deleted or not, read with its organisation: for work on
    /// data already in the project (the workers' events, scheduled refreshes), which
    /// knows only the project. Requests take theirs from [`get_project`](Self::get_project).
    async fn project_scope(&self, project: ProjectId) -> Result<Option<ProjectScope>, StoreError>;

    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes a consistent copy of the whole store, as of one moment, to the SQLite
    /// file `path` (which must not exist) while the store stays in use. SQLite only:
    /// PostgreSQL has `pg_dump` ([`StoreError::Unsupported`]).
    async fn snapshot_into(&self, path: &std::path::Path) -> Result<(), StoreError>;

    /// Closes the connections; later calls fail with [`StoreError::Unavailable`].
    async fn close(&self);

    /// Whether `bootstrap` has run.
    async fn is_initialized(&self) -> Result<bool, StoreError>;

    /// Writes the first organisation, project and keys atomically. Fails with
    /// [`StoreError::AlreadyInitialized`] (writing nothing) if it ran before.
    async fn bootstrap(&self, bootstrap: &Bootstrap) -> Result<(), StoreError>;

    /// Creates a project together with its first write key and the definitions it
    /// starts with (its overview dashboard).
    async fn create_project(
        &self,
        project: &Project,
        write_key: &ApiKey,
        definitions: &[Definition],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;

    /// The project `id` of organisation `org` (not deleted) and its scope: the lookup a
    /// request makes with its caller's organisation.
    async fn get_project(
        &self,
        org: OrganizationId,
        id: ProjectId,
    ) -> Result<Option<(ProjectScope, Project)>, StoreError>;

    async fn list_projects(&self, org: OrganizationId) -> Result<Vec<Project>, StoreError>;

    /// Replaces name, timezone and settings. `false` if the project is not there.
    async fn update_project(
        &self,
        project: &Project,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    /// Deletes a project and revokes all its keys. `false` if it is not there.
    async fn delete_project(
        &self,
        org: OrganizationId,
        id: ProjectId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    async fn create_key(&self, key: &ApiKey, audit: &NewAuditEntry) -> Result<(), StoreError>;

    /// The key with this hash, revoked or not.
    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;

    async fn list_keys(&self, scope: KeyScope) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes a key of the scope (idempotent). `None` if no such key in the scope.
    async fn revoke_key(
        &self,
        scope: KeyScope,
        id: KeyId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<Option<ApiKey>, StoreError>;

    /// Stores warnings about dropped messages.
    async fn record_ingestion_warnings(
        &self,
        warnings: &[NewIngestionWarning],
    ) -> Result<(), StoreError>;

    /// A project's ingestion warnings, newest first, `id < before` when given.
    async fn list_ingestion_warnings(
        &self,
        scope: ProjectScope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<IngestionWarningEntry>, StoreError>;

    /// Adds files to the event catalog (after they are durable on disk), all of the
    /// fence's partition. Fails with [`StoreError::Fenced`], changing nothing, once the
    /// fence's lease has passed to another holder.
    async fn add_event_files(
        &self,
        files: &[EventFile],
        fence: crate::leases::Fence,
    ) -> Result<(), StoreError>;

    /// Replaces catalogued files by others in one transaction (compaction), under the
    /// fence as [`add_event_files`](Self::add_event_files). Fails with
    /// [`StoreError::Conflict`], changing nothing, if a file to remove is not listed.
    async fn replace_event_files(
        &self,
        added: &[EventFile],
        removed: &[String],
        fence: crate::leases::Fence,
    ) -> Result<(), StoreError>;

    /// The catalogued files of the scope's project.
    async fn list_event_files(&self, scope: ProjectScope) -> Result<Vec<EventFile>, StoreError>;

    /// The catalogued files of every project (for the workers: recovery, compaction).
    async fn all_event_files(&self) -> Result<Vec<EventFile>, StoreError>;

    /// The projects deleted so far, whose event files the workers remove.
    async fn deleted_projects(&self) -> Result<Vec<ProjectId>, StoreError>;

    /// Newest first; entries with `id < before` when given; at most `limit`.
    async fn list_audit(
        &self,
        scope: AuditScope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Opens (creating if needed) and migrates the store named by `url`.
pub async fn open_metadata_store(url: &str) -> Result<Arc<dyn MetadataStore>, StoreError> {
    Ok(Arc::new(SqlMetadataStore::connect(url).await?))
}

/// The URL with any password replaced, fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_url_and_passwords_never_leak_into_errors() {
        assert_eq!(
            Backend::from_url("sqlite:///x.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::from_url("mysql://u:secret@h/db").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
