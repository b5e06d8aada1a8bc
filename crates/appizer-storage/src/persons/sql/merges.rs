//! Merges and splits: one transaction each, logged with a snapshot of the source.

use std::collections::HashSet;

use appizer_core::person::{MergeReason, MergeRecord, PersonDelta};
use appizer_core::{MergeId, PersonId};
use chrono::{DateTime, Utc};

use super::rows::{
    audited, fetch_person, ids_of, merge_from_row, millis, set_override, snapshot_json, surviving,
    write_persons,
};
use super::{SqlPersonStore, MERGE_COLUMNS};
use crate::persons::AuditWith;
use crate::{ProjectScope, StoreError};

impl SqlPersonStore {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn merge_in(
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
        let project = scope.project();
        if source == target {
            return Err(StoreError::Conflict(
                "a person cannot merge into itself".into(),
            ));
        }
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let lock = self.lock();
        let missing = |p: PersonId| StoreError::NotFound(format!("person {p}"));
        let from = fetch_person(&mut *tx, project, source, lock)
            .await?
            .ok_or_else(|| missing(source))?;
        let mut into = fetch_person(&mut *tx, project, target, lock)
            .await?
            .ok_or_else(|| missing(target))?;
        let moved = ids_of(&mut *tx, project, source).await?;
        sqlx::query(
            "UPDATE person_distinct_ids SET person_id = $3 WHERE project_id = $1 AND person_id = $2",
        )
        .bind(project.to_string())
        .bind(source.to_string())
        .bind(target.to_string())
        .execute(&mut *tx)
        .await?;
        PersonDelta {
            first_seen_ms: from.first_seen.map(millis),
            last_seen_ms: from.last_seen.map(millis),
            events: from.event_count,
            properties: from.properties.clone(),
            identified: from.is_identified,
            ..PersonDelta::default()
        }
        .apply_to(&mut into);
        write_persons(&mut tx, &[&into]).await?;
        sqlx::query("DELETE FROM persons WHERE project_id = $1 AND id = $2")
            .bind(project.to_string())
            .bind(source.to_string())
            .execute(&mut *tx)
            .await?;
        // Persons merged into the source before now lead to the target.
        sqlx::query(
            "UPDATE person_overrides SET person_id = $3, updated_at = $4 WHERE project_id = $1 \
             AND person_id = $2",
        )
        .bind(project.to_string())
        .bind(source.to_string())
        .bind(target.to_string())
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        set_override(&mut tx, project, source, "", target, at).await?;
        // The snapshot is what a split gives back, so it counts the source's updates not
        // yet applied too (they reach the target when they are).
        let mut source_snapshot = from;
        unapplied.apply_to(&mut source_snapshot);
        let record = MergeRecord {
            id: MergeId::new(),
            project_id: project,
            source,
            target,
            distinct_ids: moved,
            source_snapshot,
            reason,
            message_id: message_id.map(str::to_string),
            merged_at: at,
            split_at: None,
        };
        sqlx::query(&format!(
            "INSERT INTO person_merges ({MERGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, NULL)"
        ))
        .bind(record.id.to_string())
        .bind(project.to_string())
        .bind(source.to_string())
        .bind(target.to_string())
        .bind(serde_json::to_string(&record.distinct_ids).expect("strings serialize"))
        .bind(snapshot_json(&record.source_snapshot))
        .bind(reason.as_str())
        .bind(message_id)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        audited(&mut tx, audit, &record).await?;
        tx.commit().await?;
        self.changed();
        Ok(record)
    }

    pub(super) async fn split_in(
        &self,
        scope: ProjectScope,
        merge: MergeId,
        unapplied: &PersonDelta,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<Option<MergeRecord>, StoreError> {
        let project = scope.project();
        let _one_writer = self.writes.lock().await;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let lock = self.lock();
        let Some(row) = sqlx::query(&format!(
            "SELECT {MERGE_COLUMNS} FROM person_merges WHERE project_id = $1 AND id = $2 AND \
             split_at IS NULL{lock}"
        ))
        .bind(project.to_string())
        .bind(merge.to_string())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let mut record = merge_from_row(&row)?;
        let source = record.source;
        if fetch_person(&mut *tx, project, source, lock)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "person {source} exists already"
            )));
        }
        // The target may since have been merged on, or deleted.
        let Some(mut target) = surviving(&mut tx, project, record.target, lock).await? else {
            return Err(StoreError::NotFound(format!(
                "person {} (the merge's target) was deleted",
                record.target
            )));
        };
        let on_target: HashSet<String> = ids_of(&mut *tx, project, target.id)
            .await?
            .into_iter()
            .collect();
        let back: Vec<String> = record
            .distinct_ids
            .iter()
            .filter(|d| on_target.contains(*d))
            .cloned()
            .collect();
        // The snapshot's events that are still to be applied: the target never got
        // them, and the restored source gets them when they are.
        let given_back = record
            .source_snapshot
            .event_count
            .saturating_sub(unapplied.events);
        let mut restored = record.source_snapshot.clone();
        restored.id = source;
        restored.event_count = given_back;
        write_persons(&mut tx, &[&restored]).await?;
        for d in &back {
            sqlx::query(
                "UPDATE person_distinct_ids SET person_id = $3 WHERE project_id = $1 AND \
                 distinct_id = $2",
            )
            .bind(project.to_string())
            .bind(d)
            .bind(source.to_string())
            .execute(&mut *tx)
            .await?;
            // Events the target received for this id since the merge.
            set_override(&mut tx, project, target.id, d, source, at).await?;
        }
        sqlx::query(
            "DELETE FROM person_overrides WHERE project_id = $1 AND old_person_id = $2 AND \
             distinct_id = ''",
        )
        .bind(project.to_string())
        .bind(source.to_string())
        .execute(&mut *tx)
        .await?;
        // Persons merged into the source before this merge lead to it again.
        let earlier: Vec<String> = sqlx::query_scalar(
            "SELECT source_person_id FROM person_merges WHERE project_id = $1 AND \
             target_person_id = $2 AND split_at IS NULL AND merged_at <= $3",
        )
        .bind(project.to_string())
        .bind(source.to_string())
        .bind(millis(record.merged_at))
        .fetch_all(&mut *tx)
        .await?;
        for old in earlier {
            sqlx::query(
                "UPDATE person_overrides SET person_id = $3, updated_at = $4 WHERE \
                 project_id = $1 AND old_person_id = $2 AND distinct_id = ''",
            )
            .bind(project.to_string())
            .bind(old)
            .bind(source.to_string())
            .bind(millis(at))
            .execute(&mut *tx)
            .await?;
        }
        // What the source brought leaves the target; property values stay (they cannot
        // be told apart once merged).
        target.event_count = target.event_count.saturating_sub(given_back);
        write_persons(&mut tx, &[&target]).await?;
        sqlx::query("UPDATE person_merges SET split_at = $3 WHERE project_id = $1 AND id = $2")
            .bind(project.to_string())
            .bind(merge.to_string())
            .bind(millis(at))
            .execute(&mut *tx)
            .await?;
        record.split_at = Some(at);
        audited(&mut tx, audit, &record).await?;
        tx.commit().await?;
        self.changed();
        Ok(Some(record))
    }
}
