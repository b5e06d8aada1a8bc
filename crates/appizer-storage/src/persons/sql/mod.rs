//! [`PersonStore`] over SQL, for SQLite and PostgreSQL, in the dialect both accept.
//! Writes that read before they write run one at a time in this process (SQLite has one
//! writer anyway); on PostgreSQL they also lock the rows they read, so several nodes
//! can share the store.
//!
//! `rows` maps rows to persons and holds the statements several operations share;
//! `merges` holds merges and splits; `overrides` loads what queries apply to events.

mod merges;
mod overrides;
mod rows;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use appizer_core::person::{MergeReason, MergeRecord, Person, PersonDelta};
use appizer_core::{MergeId, PersonId, ProjectId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};

use super::{
    Applied, AuditWith, Deleted, Identified, NewPerson, PersonFilter, PersonOverrides, PersonStore,
    Unlinked,
};
use crate::leases::check_fence;
use crate::metadata::Backend;
use crate::{ProjectScope, StoreError};
use rows::{
    audited, fetch_person, id, ids_of, link_new_id, merge_from_row, millis, person_from_row,
    placeholders, set_override, surviving, write_persons,
};

/// Ids per `IN (...)` list. Kept small: sqlx's SQLite driver looks up each bound
/// parameter by name, so a statement's cost grows with the square of its parameters.
const CHUNK: usize = 100;
/// Rows per multi-row `INSERT`, for the same reason.
const ROWS: usize = 32;
/// The `worker_offsets` row of applied person updates.
const PERSON_UPDATES: &str = "person_updates";

/// The `worker_offsets` row of a partition's person updates (partition 0 keeps the
/// name it had before there were partitions).
fn person_updates(partition: u32) -> String {
    match partition {
        0 => PERSON_UPDATES.to_string(),
        p => format!("{PERSON_UPDATES}/{p}"),
    }
}

const PERSON_COLUMNS: &str = "id, project_id, is_identified, properties, property_writes, \
     first_seen, last_seen, event_count, created_at";
const MERGE_COLUMNS: &str = "id, project_id, source_person_id, target_person_id, distinct_ids, \
     source_snapshot, reason, message_id, merged_at, split_at";

#[derive(Debug, Clone)]
pub struct SqlPersonStore {
    pool: AnyPool,
    backend: Backend,
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Bumped after every write of this node (see [`PersonStore::version`]).
    version: Arc<std::sync::atomic::AtomicU64>,
}

impl SqlPersonStore {
    /// A person store over the metadata store's pool (its migrations create the tables).
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Self {
            pool,
            backend,
            writes: Arc::new(tokio::sync::Mutex::new(())),
            version: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    fn changed(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// `FOR UPDATE` where the backend has it.
    fn lock(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

#[async_trait]
impl PersonStore for SqlPersonStore {
    async fn lookup(
        &self,
        scope: ProjectScope,
        distinct_ids: &[String],
    ) -> Result<HashMap<String, PersonId>, StoreError> {
        let project = scope.project();
        let mut found = HashMap::with_capacity(distinct_ids.len());
        for chunk in distinct_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT distinct_id, person_id FROM person_distinct_ids WHERE project_id = $1 \
                 AND distinct_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(project.to_string());
            for d in chunk {
                query = query.bind(d);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get(0)?, id(&row.try_get::<String, _>(1)?)?);
            }
        }
        Ok(found)
    }

    async fn create(
        &self,
        scope: ProjectScope,
        new: &[NewPerson],
    ) -> Result<HashMap<String, PersonId>, StoreError> {
        let project = scope.project();
        let mut out = HashMap::with_capacity(new.len());
        if new.is_empty() {
            return Ok(out);
        }
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        for chunk in new.chunks(ROWS) {
            let values = (0..chunk.len())
                .map(|i| format!("($1, ${}, ${}, ${})", 2 + 3 * i, 3 + 3 * i, 4 + 3 * i))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO person_distinct_ids (project_id, distinct_id, person_id, created_at) \
                 VALUES {values} ON CONFLICT (project_id, distinct_id) DO NOTHING \
                 RETURNING distinct_id, person_id"
            );
            let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(project.to_string());
            for n in chunk {
                query = query
                    .bind(&n.distinct_id)
                    .bind(n.person_id.to_string())
                    .bind(millis(n.at));
            }
            let linked: HashSet<(String, String)> =
                query.fetch_all(&mut *tx).await?.into_iter().collect();
            let fresh: Vec<&NewPerson> = chunk
                .iter()
                .filter(|n| linked.contains(&(n.distinct_id.clone(), n.person_id.to_string())))
                .collect();
            if !fresh.is_empty() {
                let values = (0..fresh.len())
                    .map(|i| {
                        let b = 2 + 3 * i;
                        format!(
                            "(${b}, $1, ${}, '{{}}', '{{}}', NULL, NULL, 0, ${})",
                            b + 1,
                            b + 2
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("INSERT INTO persons ({PERSON_COLUMNS}) VALUES {values}");
                let mut query = sqlx::query(&sql).bind(project.to_string());
                for n in &fresh {
                    query = query
                        .bind(n.person_id.to_string())
                        .bind(n.is_identified as i64)
                        .bind(millis(n.at));
                }
                query.execute(&mut *tx).await?;
            }
            for n in fresh {
                out.insert(n.distinct_id.clone(), n.person_id);
            }
        }
        tx.commit().await?;
        self.changed();
        drop(_one_writer);
        let lost: Vec<String> = new
            .iter()
            .filter(|n| !out.contains_key(&n.distinct_id))
            .map(|n| n.distinct_id.clone())
            .collect();
        out.extend(self.lookup(scope, &lost).await?);
        Ok(out)
    }

    async fn add_distinct_id(
        &self,
        scope: ProjectScope,
        person: PersonId,
        distinct_id: &str,
        at: DateTime<Utc>,
        audit: AuditWith<'_, PersonId>,
    ) -> Result<PersonId, StoreError> {
        let project = scope.project();
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let linked = link_new_id(&mut tx, project, distinct_id, person, at).await?;
        let owner: String = sqlx::query_scalar(
            "SELECT person_id FROM person_distinct_ids WHERE project_id = $1 AND distinct_id = $2",
        )
        .bind(project.to_string())
        .bind(distinct_id)
        .fetch_one(&mut *tx)
        .await?;
        let owner: PersonId = id(&owner)?;
        if linked {
            audited(&mut tx, audit, &owner).await?;
        }
        tx.commit().await?;
        self.changed();
        Ok(owner)
    }

    async fn identify(
        &self,
        scope: ProjectScope,
        new: &NewPerson,
        delta: &PersonDelta,
        audit: AuditWith<'_, Identified>,
    ) -> Result<Identified, StoreError> {
        let project = scope.project();
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let created =
            link_new_id(&mut tx, project, &new.distinct_id, new.person_id, new.at).await?;
        let mut person = if created {
            Person::new(new.person_id, project, new.is_identified, new.at)
        } else {
            let owner: String = sqlx::query_scalar(&format!(
                "SELECT person_id FROM person_distinct_ids WHERE project_id = $1 AND \
                 distinct_id = $2{}",
                self.lock()
            ))
            .bind(project.to_string())
            .bind(&new.distinct_id)
            .fetch_one(&mut *tx)
            .await?;
            let owner: PersonId = id(&owner)?;
            fetch_person(&mut *tx, project, owner, self.lock())
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("distinct id of no person {owner}")))?
        };
        delta.apply_to(&mut person);
        write_persons(&mut tx, &[&person]).await?;
        let outcome = Identified {
            person: person.id,
            created,
        };
        audited(&mut tx, audit, &outcome).await?;
        tx.commit().await?;
        self.changed();
        Ok(outcome)
    }

    async fn set_identified(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<(), StoreError> {
        let project = scope.project();
        sqlx::query("UPDATE persons SET is_identified = 1 WHERE project_id = $1 AND id = $2")
            .bind(project.to_string())
            .bind(person.to_string())
            .execute(&self.pool)
            .await?;
        self.changed();
        Ok(())
    }

    async fn get(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Option<Person>, StoreError> {
        let project = scope.project();
        fetch_person(&self.pool, project, person, "").await
    }

    async fn distinct_ids(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Vec<String>, StoreError> {
        let project = scope.project();
        ids_of(&self.pool, project, person).await
    }
    async fn merge(
        &self,
        scope: ProjectScope,
        source: PersonId,
        target: PersonId,
        reason: MergeReason,
        message_id: Option<&str>,
        unapplied: &PersonDelta,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<MergeRecord, StoreError> {
        self.merge_in(
            scope, source, target, reason, message_id, unapplied, at, audit,
        )
        .await
    }

    async fn split(
        &self,
        scope: ProjectScope,
        merge: MergeId,
        unapplied: &PersonDelta,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<Option<MergeRecord>, StoreError> {
        self.split_in(scope, merge, unapplied, at, audit).await
    }

    async fn merge_log(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Vec<MergeRecord>, StoreError> {
        let project = scope.project();
        let rows = sqlx::query(&format!(
            "SELECT {MERGE_COLUMNS} FROM person_merges WHERE project_id = $1 AND \
             (target_person_id = $2 OR source_person_id = $2) ORDER BY merged_at DESC, id DESC"
        ))
        .bind(project.to_string())
        .bind(person.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(merge_from_row).collect()
    }

    async fn remove_distinct_id(
        &self,
        scope: ProjectScope,
        person: PersonId,
        distinct_id: &str,
        at: DateTime<Utc>,
        audit: AuditWith<'_, PersonId>,
    ) -> Result<Unlinked, StoreError> {
        let project = scope.project();
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let owner: Option<String> = sqlx::query_scalar(&format!(
            "SELECT person_id FROM person_distinct_ids WHERE project_id = $1 AND distinct_id = $2{}",
            self.lock()
        ))
        .bind(project.to_string())
        .bind(distinct_id)
        .fetch_optional(&mut *tx)
        .await?;
        if owner.as_deref() != Some(&person.to_string()) {
            return Ok(Unlinked::NotTheirs);
        }
        if ids_of(&mut *tx, project, person).await?.len() < 2 {
            return Ok(Unlinked::OnlyId);
        }
        let split_off = PersonId::new();
        write_persons(&mut tx, &[&Person::new(split_off, project, false, at)]).await?;
        sqlx::query(
            "UPDATE person_distinct_ids SET person_id = $3 WHERE project_id = $1 AND distinct_id = $2",
        )
        .bind(project.to_string())
        .bind(distinct_id)
        .bind(split_off.to_string())
        .execute(&mut *tx)
        .await?;
        // The id's events, stored under the person or under persons merged into it.
        let merged_in: Vec<String> = sqlx::query_scalar(
            "SELECT old_person_id FROM person_overrides WHERE project_id = $1 AND person_id = $2 \
             AND distinct_id = ''",
        )
        .bind(project.to_string())
        .bind(person.to_string())
        .fetch_all(&mut *tx)
        .await?;
        set_override(&mut tx, project, person, distinct_id, split_off, at).await?;
        for old in merged_in {
            set_override(&mut tx, project, id(&old)?, distinct_id, split_off, at).await?;
        }
        audited(&mut tx, audit, &split_off).await?;
        tx.commit().await?;
        self.changed();
        Ok(Unlinked::Moved(split_off))
    }

    async fn apply_deltas(
        &self,
        deltas: &[(ProjectScope, PersonId, PersonDelta)],
        at: Option<Applied>,
    ) -> Result<(), StoreError> {
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if let Some(at) = at {
            check_fence(&mut tx, self.backend, at.fence).await?;
        }
        let lock = self.lock();
        // Read and written a chunk at a time: one query each way per chunk.
        for chunk in deltas.chunks(CHUNK) {
            let sql = format!(
                "SELECT {PERSON_COLUMNS} FROM persons WHERE id IN ({}){lock}",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for (_, person, _) in chunk {
                query = query.bind(person.to_string());
            }
            let mut found: HashMap<PersonId, Person> = HashMap::with_capacity(chunk.len());
            for row in query.fetch_all(&mut *tx).await? {
                let p = person_from_row(&row)?;
                found.insert(p.id, p);
            }
            let mut changed: Vec<PersonId> = Vec::with_capacity(chunk.len());
            for (scope, person, delta) in chunk {
                let project = scope.project();
                let target = match found.get(person) {
                    Some(p) if p.project_id == project => *person,
                    Some(_) => continue,
                    // Merged away (or deleted) since: follow the merges.
                    None => match surviving(&mut tx, project, *person, lock).await? {
                        Some(p) => {
                            let id = p.id;
                            found.entry(id).or_insert(p);
                            id
                        }
                        None => continue,
                    },
                };
                if let Some(p) = found.get_mut(&target) {
                    delta.apply_to(p);
                    changed.push(target);
                }
            }
            changed.sort();
            changed.dedup();
            let changed: Vec<&Person> = changed.iter().filter_map(|id| found.get(id)).collect();
            write_persons(&mut tx, &changed).await?;
        }
        if let Some(at) = at {
            sqlx::query(
                "INSERT INTO worker_offsets (name, queue_offset) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET queue_offset = excluded.queue_offset",
            )
            .bind(person_updates(at.fence.partition))
            .bind(at.offset as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.changed();
        Ok(())
    }

    async fn applied_offset(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let offset: Option<i64> =
            sqlx::query_scalar("SELECT queue_offset FROM worker_offsets WHERE name = $1")
                .bind(person_updates(partition))
                .fetch_optional(&self.pool)
                .await?;
        Ok(offset.map(|o| o.max(0) as u64))
    }

    async fn list(
        &self,
        scope: ProjectScope,
        filter: &PersonFilter,
    ) -> Result<Vec<Person>, StoreError> {
        let project = scope.project();
        let mut sql = format!("SELECT {PERSON_COLUMNS} FROM persons WHERE project_id = $1");
        let mut binds: Vec<String> = vec![project.to_string()];
        if let Some(after) = filter.after {
            binds.push(after.to_string());
            sql.push_str(&format!(" AND id > ${}", binds.len()));
        }
        for (key, value) in &filter.properties {
            // Compared as JSON text: "pro", 42, true.
            match self.backend {
                Backend::Sqlite => {
                    binds.push(format!("$.\"{}\"", key.replace('"', "\\\"")));
                    sql.push_str(&format!(" AND (properties -> ${})", binds.len()));
                }
                Backend::Postgres => {
                    binds.push(key.clone());
                    sql.push_str(&format!(
                        " AND ((properties::jsonb -> ${})::text)",
                        binds.len()
                    ));
                }
            }
            binds.push(value.to_string());
            sql.push_str(&format!(" = ${}", binds.len()));
        }
        if let Some(text) = &filter.distinct_id_contains {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            binds.push(format!("%{escaped}%"));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM person_distinct_ids d WHERE d.project_id = persons.project_id \
                 AND d.person_id = persons.id AND LOWER(d.distinct_id) LIKE ${} ESCAPE '\\')",
                binds.len()
            ));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", filter.limit.max(1)));
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(person_from_row).collect()
    }

    fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn property_table(
        &self,
        scope: ProjectScope,
    ) -> Result<Vec<(PersonId, String)>, StoreError> {
        let project = scope.project();
        let rows =
            sqlx::query("SELECT id, properties FROM persons WHERE project_id = $1 ORDER BY id")
                .bind(project.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    id(&r.try_get::<String, _>("id")?)?,
                    r.try_get("properties")?,
                ))
            })
            .collect()
    }

    async fn delete(
        &self,
        scope: ProjectScope,
        person: PersonId,
        suppress: bool,
        at: DateTime<Utc>,
        audit: AuditWith<'_, Deleted>,
    ) -> Result<Option<Deleted>, StoreError> {
        let project = scope.project();
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if fetch_person(&mut *tx, project, person, self.lock())
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let ids = ids_of(&mut *tx, project, person).await?;
        for sql in [
            "DELETE FROM person_distinct_ids WHERE project_id = $1 AND person_id = $2",
            "DELETE FROM persons WHERE project_id = $1 AND id = $2",
        ] {
            sqlx::query(sql)
                .bind(project.to_string())
                .bind(person.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO deleted_persons (project_id, person_id, deleted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, person_id) DO NOTHING",
        )
        .bind(project.to_string())
        .bind(person.to_string())
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        if suppress {
            for d in &ids {
                sqlx::query(
                    "INSERT INTO suppressed_distinct_ids (project_id, distinct_id, created_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (project_id, distinct_id) DO NOTHING",
                )
                .bind(project.to_string())
                .bind(d)
                .bind(millis(at))
                .execute(&mut *tx)
                .await?;
            }
        }
        let deleted = Deleted {
            distinct_ids: ids,
            suppressed: suppress,
        };
        audited(&mut tx, audit, &deleted).await?;
        tx.commit().await?;
        self.changed();
        Ok(Some(deleted))
    }

    async fn suppressed(
        &self,
        scope: ProjectScope,
        distinct_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let project = scope.project();
        let mut found = HashSet::new();
        for chunk in distinct_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT distinct_id FROM suppressed_distinct_ids WHERE project_id = $1 AND \
                 distinct_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(project.to_string());
            for d in chunk {
                query = query.bind(d);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get(0)?);
            }
        }
        Ok(found)
    }

    async fn overrides(&self, scope: ProjectScope) -> Result<PersonOverrides, StoreError> {
        let project = scope.project();
        Ok(self
            .load_overrides(Some(project))
            .await?
            .remove(&project)
            .unwrap_or_default())
    }

    async fn all_overrides(&self) -> Result<HashMap<ProjectId, PersonOverrides>, StoreError> {
        self.load_overrides(None).await
    }
}
