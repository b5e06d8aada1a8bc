//! The metadata store over SQL, one implementation for SQLite and PostgreSQL.
//!
//! Queries are written once in the dialect both accept (`$N` parameters, `TEXT` ids,
//! `BIGINT` millisecond timestamps, JSON as text) and run through sqlx's `Any` driver;
//! only the migrations differ per backend.//!
//! `connect` prepares SQLite files and connections; `rows` maps rows to the model and
//! holds the inserts several methods share; `catalog` reads the event file catalog.

mod catalog;
mod connect;
mod rows;

use std::sync::Arc;

use appizer_core::definition::{Definition, DefinitionKind};
use appizer_core::event::{Dialect, IngestionWarningEntry, NewIngestionWarning};
use appizer_core::tenancy::{ApiKey, AuditEntry, NewAuditEntry, Project};
use appizer_core::{DefinitionId, KeyId, OrganizationId, PersonId, ProjectId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::leases::{check_fence, Fence, LeaseStore, SqlLeaseStore};
use crate::persons::{PersonStore, SqlPersonStore};
use crate::push::{PushStore, SqlPushStore};
use crate::scope::ProjectScope;
use crate::team::{SqlTeamStore, TeamStore};

use super::{
    redact_url, AuditScope, Backend, Bootstrap, EventFile, KeyScope, MetadataStore, StoreError,
};

use connect::{configure_sqlite, prepare_sqlite_url};
use rows::{
    audit_from_row, definition_from_row, insert_key, insert_project, key_from_row, millis,
    owned_by, project_from_row, settings_json, DEFINITION_COLUMNS,
};
pub(crate) use rows::{from_millis, insert_audit, parse_id};

/// The SQL metadata store; see the module docs.
#[derive(Debug, Clone)]
pub struct SqlMetadataStore {
    pool: AnyPool,
    backend: Backend,
    persons: Arc<SqlPersonStore>,
    push: Arc<SqlPushStore>,
    team: Arc<SqlTeamStore>,
    leases: Arc<SqlLeaseStore>,
    definitions_version: Arc<std::sync::atomic::AtomicU64>,
}

const KEY_COLUMNS: &str = "id, organization_id, project_id, kind, role, name, display_prefix, \
     key_hash, created_at, created_by, revoked_at";
const PROJECT_COLUMNS: &str =
    "id, organization_id, name, timezone, settings, created_at, updated_at";

impl SqlMetadataStore {
    /// Connects, creating the SQLite file and its directory if needed, and applies the
    /// backend's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let (url, max_connections) = match backend {
            Backend::Sqlite => (prepare_sqlite_url(url)?, 4),
            Backend::Postgres => (url.to_string(), 16),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        configure_sqlite(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::Setup(format!("{}: {e}", redact_url(&url))))?;
        super::migrations::migrator(backend)
            .await?
            .run(&pool)
            .await?;
        Ok(Self {
            persons: Arc::new(SqlPersonStore::new(pool.clone(), backend)),
            push: Arc::new(SqlPushStore::new(pool.clone(), backend)),
            team: Arc::new(SqlTeamStore::new(pool.clone(), backend)),
            leases: Arc::new(SqlLeaseStore::new(pool.clone(), backend)),
            definitions_version: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            pool,
            backend,
        })
    }
}

/// Members written per statement (sqlx binds SQLite parameters by name, so long
/// statements cost more than their share).
const MEMBER_ROWS: usize = 50;

impl SqlMetadataStore {
    fn definitions_changed(&self) {
        self.definitions_version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

#[async_trait]
impl MetadataStore for SqlMetadataStore {
    fn definitions_version(&self) -> u64 {
        self.definitions_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    async fn create_definition(
        &self,
        scope: ProjectScope,
        d: &Definition,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        owned_by(scope, d)?;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        insert_definition(&mut tx, d).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        self.definitions_changed();
        Ok(())
    }

    async fn list_definitions(
        &self,
        scope: ProjectScope,
        kind: DefinitionKind,
    ) -> Result<Vec<Definition>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM definitions WHERE project_id = $1 AND kind = $2 ORDER BY name"
        ))
        .bind(scope.project().to_string())
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(definition_from_row).collect()
    }

    async fn all_definitions(&self, kind: DefinitionKind) -> Result<Vec<Definition>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM definitions WHERE kind = $1 ORDER BY id"
        ))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(definition_from_row).collect()
    }

    async fn get_definition(
        &self,
        scope: ProjectScope,
        kind: DefinitionKind,
        id: DefinitionId,
    ) -> Result<Option<Definition>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEFINITION_COLUMNS} FROM definitions WHERE project_id = $1 AND kind = $2 AND id = $3"
        ))
        .bind(scope.project().to_string())
        .bind(kind.as_str())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(definition_from_row)
        .transpose()
    }

    async fn update_definition(
        &self,
        scope: ProjectScope,
        d: &Definition,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        if d.project_id != scope.project() {
            return Ok(false);
        }
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE definitions SET name = $1, description = $2, body = $3, updated_at = $4 \
             WHERE project_id = $5 AND kind = $6 AND id = $7",
        )
        .bind(&d.name)
        .bind(&d.description)
        .bind(d.body.to_string())
        .bind(millis(d.updated_at))
        .bind(d.project_id.to_string())
        .bind(d.kind.as_str())
        .bind(d.id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if done {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        self.definitions_changed();
        Ok(done)
    }

    async fn delete_definition(
        &self,
        scope: ProjectScope,
        kind: DefinitionKind,
        id: DefinitionId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let done =
            sqlx::query("DELETE FROM definitions WHERE project_id = $1 AND kind = $2 AND id = $3")
                .bind(scope.project().to_string())
                .bind(kind.as_str())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        if done {
            sqlx::query("DELETE FROM segment_members WHERE segment_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        self.definitions_changed();
        Ok(done)
    }

    async fn replace_segment_members(
        &self,
        scope: ProjectScope,
        segment: DefinitionId,
        members: &[PersonId],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let found = sqlx::query(
            "UPDATE definitions SET member_count = $1, computed_at = $2 \
             WHERE project_id = $3 AND kind = 'segment' AND id = $4",
        )
        .bind(members.len() as i64)
        .bind(millis(at))
        .bind(scope.project().to_string())
        .bind(segment.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(StoreError::NotFound(format!("segment {segment}")));
        }
        sqlx::query("DELETE FROM segment_members WHERE segment_id = $1")
            .bind(segment.to_string())
            .execute(&mut *tx)
            .await?;
        let segment = segment.to_string();
        for chunk in members.chunks(MEMBER_ROWS) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, ${})", i + 2))
                .collect();
            let sql = format!(
                "INSERT INTO segment_members (segment_id, person_id) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(&segment);
            for p in chunk {
                query = query.bind(p.to_string());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.definitions_changed();
        Ok(())
    }

    async fn segment_members(
        &self,
        scope: ProjectScope,
        segment: DefinitionId,
        after: Option<PersonId>,
        limit: u32,
    ) -> Result<Vec<PersonId>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT m.person_id FROM segment_members m JOIN definitions d ON d.id = m.segment_id \
             WHERE d.project_id = $4 AND m.segment_id = $1 AND m.person_id > $2 \
             ORDER BY m.person_id LIMIT $3",
        )
        .bind(segment.to_string())
        .bind(after.map(|p| p.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .bind(scope.project().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| parse_id(r, "person id")).collect()
    }

    async fn is_segment_member(
        &self,
        scope: ProjectScope,
        segment: DefinitionId,
        person: PersonId,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 FROM segment_members m JOIN definitions d ON d.id = m.segment_id \
             WHERE d.project_id = $3 AND m.segment_id = $1 AND m.person_id = $2",
        )
        .bind(segment.to_string())
        .bind(person.to_string())
        .bind(scope.project().to_string())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    fn push(&self) -> Arc<dyn PushStore> {
        self.push.clone()
    }

    fn team(&self) -> Arc<dyn TeamStore> {
        self.team.clone()
    }

    fn leases(&self) -> Arc<dyn LeaseStore> {
        self.leases.clone()
    }

    fn persons(&self) -> Arc<dyn PersonStore> {
        self.persons.clone()
    }

    async fn project_scope(&self, project: ProjectId) -> Result<Option<ProjectScope>, StoreError> {
        let org: Option<String> =
            sqlx::query_scalar("SELECT organization_id FROM projects WHERE id = $1")
                .bind(project.to_string())
                .fetch_optional(&self.pool)
                .await?;
        org.map(|o| {
            Ok(ProjectScope::verified(
                parse_id(&o, "organization id")?,
                project,
            ))
        })
        .transpose()
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn snapshot_into(&self, path: &std::path::Path) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Unsupported(
                "a PostgreSQL metadata store is backed up with pg_dump (pg_dump --format=custom DB > metadata.dump; pg_restore into an empty database)".into(),
            ));
        }
        if path.exists() {
            return Err(StoreError::Conflict(format!("{} exists", path.display())));
        }
        // One read transaction: the copy is the database as of its start, while
        // writers go on (write-ahead log).
        sqlx::query("VACUUM INTO $1")
            .bind(path.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        if self.backend == Backend::Sqlite {
            // Fold the write-ahead log into the database file, so what is on disk
            // after close is one complete file whatever happens to the connections.
            // Best effort: a failure leaves the log, which SQLite replays on open.
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await;
        }
        self.pool.close().await;
    }

    async fn is_initialized(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM installation")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    async fn bootstrap(&self, b: &Bootstrap) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let marked = sqlx::query("INSERT INTO installation (id, initialized_at) VALUES (1, $1)")
            .bind(millis(b.organization.created_at))
            .execute(&mut *tx)
            .await;
        match marked.map_err(StoreError::from) {
            Err(StoreError::Conflict(_)) => return Err(StoreError::AlreadyInitialized),
            other => other?,
        };
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(b.organization.id.to_string())
            .bind(&b.organization.name)
            .bind(millis(b.organization.created_at))
            .execute(&mut *tx)
            .await?;
        insert_project(&mut tx, &b.project).await?;
        for key in &b.keys {
            insert_key(&mut tx, key).await?;
        }
        for member in &b.members {
            crate::team::insert_member(&mut tx, member).await?;
        }
        for d in &b.definitions {
            insert_definition(&mut tx, d).await?;
        }
        insert_audit(&mut tx, &b.audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_project(
        &self,
        project: &Project,
        write_key: &ApiKey,
        definitions: &[Definition],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        insert_project(&mut tx, project).await?;
        insert_key(&mut tx, write_key).await?;
        for d in definitions {
            insert_definition(&mut tx, d).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        if !definitions.is_empty() {
            self.definitions_changed();
        }
        Ok(())
    }

    async fn get_project(
        &self,
        org: OrganizationId,
        id: ProjectId,
    ) -> Result<Option<(ProjectScope, Project)>, StoreError> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects \
             WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(org.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(project) = row.as_ref().map(project_from_row).transpose()? else {
            return Ok(None);
        };
        Ok(Some((
            ProjectScope::verified(project.organization_id, project.id),
            project,
        )))
    }

    async fn list_projects(&self, org: OrganizationId) -> Result<Vec<Project>, StoreError> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects \
             WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(org.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_from_row).collect()
    }

    async fn update_project(&self, p: &Project, audit: &NewAuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE projects SET name = $3, timezone = $4, settings = $5, updated_at = $6 \
             WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(p.organization_id.to_string())
        .bind(p.id.to_string())
        .bind(&p.name)
        .bind(&p.timezone)
        .bind(settings_json(p))
        .bind(millis(p.updated_at))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_project(
        &self,
        org: OrganizationId,
        id: ProjectId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE projects SET deleted_at = $3 \
             WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE organization_id = $1 AND project_id = $2 AND revoked_at IS NULL",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_key(&self, key: &ApiKey, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if let Some(project) = key.project_id() {
            // The project must exist in the key's organisation and not be deleted.
            let found = sqlx::query(
                "SELECT id FROM projects \
                 WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
            )
            .bind(key.organization_id.to_string())
            .bind(project.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none() {
                return Err(StoreError::Conflict(format!(
                    "project {project} does not exist in the key's organisation"
                )));
            }
        }
        insert_key(&mut tx, key).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = sqlx::query(&sql)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, scope: KeyScope) -> Result<Vec<ApiKey>, StoreError> {
        let rows = match scope {
            KeyScope::Organization(org) => {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys \
                     WHERE organization_id = $1 AND project_id IS NULL ORDER BY created_at, id"
                );
                sqlx::query(&sql)
                    .bind(org.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
            KeyScope::Project(org, project) => {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys \
                     WHERE organization_id = $1 AND project_id = $2 ORDER BY created_at, id"
                );
                sqlx::query(&sql)
                    .bind(org.to_string())
                    .bind(project.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(
        &self,
        scope: KeyScope,
        id: KeyId,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<Option<ApiKey>, StoreError> {
        let (org, project) = match scope {
            KeyScope::Organization(org) => (org, None),
            KeyScope::Project(org, p) => (org, Some(p)),
        };
        let scope_clause = if project.is_some() {
            "project_id = $4"
        } else {
            "project_id IS NULL"
        };
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let update = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND organization_id = $2 AND {scope_clause}"
        );
        let mut query = sqlx::query(&update)
            .bind(id.to_string())
            .bind(org.to_string())
            .bind(millis(at));
        if let Some(p) = project {
            query = query.bind(p.to_string());
        }
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let select = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&select)
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        key_from_row(&row).map(Some)
    }

    async fn record_ingestion_warnings(
        &self,
        warnings: &[NewIngestionWarning],
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        for w in warnings {
            sqlx::query(
                "INSERT INTO ingestion_warnings (organization_id, project_id, message_id, field, \
                 reason, dialect, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(w.organization_id.to_string())
            .bind(w.project_id.to_string())
            .bind(w.message_id.clone())
            .bind(&w.field)
            .bind(&w.reason)
            .bind(w.dialect.as_str())
            .bind(millis(w.at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_ingestion_warnings(
        &self,
        scope: ProjectScope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<IngestionWarningEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, organization_id, project_id, message_id, field, reason, dialect, \
             created_at FROM ingestion_warnings \
             WHERE organization_id = $1 AND project_id = $2 AND id < $3 \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(scope.organization().to_string())
        .bind(scope.project().to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let dialect: String = row.try_get("dialect")?;
                Ok(IngestionWarningEntry {
                    id: row.try_get("id")?,
                    warning: NewIngestionWarning {
                        organization_id: parse_id(
                            &row.try_get::<String, _>("organization_id")?,
                            "org id",
                        )?,
                        project_id: parse_id(
                            &row.try_get::<String, _>("project_id")?,
                            "project id",
                        )?,
                        message_id: row.try_get("message_id")?,
                        field: row.try_get("field")?,
                        reason: row.try_get("reason")?,
                        dialect: Dialect::parse(&dialect)
                            .ok_or_else(|| StoreError::Corrupt(format!("dialect `{dialect}`")))?,
                        at: from_millis(row.try_get("created_at")?)?,
                    },
                })
            })
            .collect()
    }

    async fn add_event_files(&self, files: &[EventFile], fence: Fence) -> Result<(), StoreError> {
        self.replace_event_files(files, &[], fence).await
    }

    async fn replace_event_files(
        &self,
        files: &[EventFile],
        removed: &[String],
        fence: Fence,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        check_fence(&mut tx, self.backend, fence).await?;
        if let Some(f) = files.iter().find(|f| f.partition != fence.partition) {
            return Err(StoreError::Conflict(format!(
                "event file {} is of partition {}, written under partition {}'s fence",
                f.path, f.partition, fence.partition
            )));
        }
        for path in removed {
            let done = sqlx::query("DELETE FROM event_files WHERE path = $1")
                .bind(path)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "event file {path} is not in the catalog"
                )));
            }
        }
        for f in files {
            sqlx::query(
                "INSERT INTO event_files (path, project_id, date, row_count, byte_size, \
                 min_timestamp, max_timestamp, max_queue_offset, created_at, persons_folded_at, \
                 queue_partition) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&f.path)
            .bind(f.project_id.to_string())
            .bind(&f.date)
            .bind(f.row_count as i64)
            .bind(f.byte_size as i64)
            .bind(f.min_timestamp)
            .bind(f.max_timestamp)
            .bind(f.max_queue_offset as i64)
            .bind(millis(f.created_at))
            .bind(f.persons_folded_at.map(millis))
            .bind(i64::from(f.partition))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_event_files(&self, scope: ProjectScope) -> Result<Vec<EventFile>, StoreError> {
        self.event_files(Some(scope.project())).await
    }

    async fn all_event_files(&self) -> Result<Vec<EventFile>, StoreError> {
        self.event_files(None).await
    }

    async fn deleted_projects(&self) -> Result<Vec<ProjectId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM projects WHERE deleted_at IS NOT NULL ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        ids.iter().map(|id| parse_id(id, "project id")).collect()
    }

    async fn list_audit(
        &self,
        scope: AuditScope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let (org, project) = match scope {
            AuditScope::Organization(org) => (org, None),
            AuditScope::Project(org, p) => (org, Some(p)),
        };
        let project_clause = if project.is_some() {
            "AND project_id = $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT id, organization_id, project_id, actor_key_id, actor_member_id, action, \
             target_type, \
             target_id, details, request_id, created_at FROM audit_log \
             WHERE organization_id = $1 AND id < $2 {project_clause} \
             ORDER BY id DESC LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(org.to_string())
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit));
        if let Some(p) = project {
            query = query.bind(p.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

async fn insert_definition(
    conn: &mut sqlx::AnyConnection,
    d: &Definition,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO definitions ({DEFINITION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(d.id.to_string())
    .bind(d.project_id.to_string())
    .bind(d.kind.as_str())
    .bind(&d.name)
    .bind(&d.description)
    .bind(d.body.to_string())
    .bind(d.member_count.map(|n| n as i64))
    .bind(d.computed_at.map(millis))
    .bind(millis(d.created_at))
    .bind(millis(d.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}
