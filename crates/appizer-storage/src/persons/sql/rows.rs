//! Row mapping and the statements several operations share.

use appizer_core::person::{MergeReason, MergeRecord, Person, PersonProperties};
use appizer_core::{PersonId, ProjectId};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row, Transaction};

use super::{PERSON_COLUMNS, ROWS};
use crate::metadata::insert_audit;
use crate::persons::AuditWith;
use crate::StoreError;

pub(super) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

pub(super) fn id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("`{text}` is not a valid id")))
}

pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn person_from_row(row: &AnyRow) -> Result<Person, StoreError> {
    let properties = PersonProperties::from_json(
        &row.try_get::<String, _>("properties")?,
        &row.try_get::<String, _>("property_writes")?,
    )
    .map_err(|e| StoreError::Corrupt(format!("person properties: {e}")))?;
    Ok(Person {
        id: id(&row.try_get::<String, _>("id")?)?,
        project_id: id(&row.try_get::<String, _>("project_id")?)?,
        is_identified: row.try_get::<i64, _>("is_identified")? != 0,
        properties,
        first_seen: row
            .try_get::<Option<i64>, _>("first_seen")?
            .map(time)
            .transpose()?,
        last_seen: row
            .try_get::<Option<i64>, _>("last_seen")?
            .map(time)
            .transpose()?,
        event_count: row.try_get::<i64, _>("event_count")?.max(0) as u64,
        created_at: time(row.try_get("created_at")?)?,
    })
}

pub(super) fn snapshot_json(p: &Person) -> String {
    json!({
        "id": p.id.to_string(),
        "project_id": p.project_id.to_string(),
        "is_identified": p.is_identified,
        "properties": p.properties.values_json(),
        "property_writes": p.properties.writes_json(),
        "first_seen": p.first_seen.map(millis),
        "last_seen": p.last_seen.map(millis),
        "event_count": p.event_count,
        "created_at": millis(p.created_at),
    })
    .to_string()
}

pub(super) fn snapshot_from_json(text: &str) -> Result<Person, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("merge snapshot: {what}"));
    let v: Value = serde_json::from_str(text).map_err(|_| corrupt("not JSON"))?;
    let s = |k: &str| v[k].as_str().ok_or_else(|| corrupt(k));
    let ms = |k: &str| v[k].as_i64().map(time).transpose();
    Ok(Person {
        id: id(s("id")?)?,
        project_id: id(s("project_id")?)?,
        is_identified: v["is_identified"].as_bool().unwrap_or(false),
        properties: PersonProperties::from_json(s("properties")?, s("property_writes")?)
            .map_err(|_| corrupt("properties"))?,
        first_seen: ms("first_seen")?,
        last_seen: ms("last_seen")?,
        event_count: v["event_count"].as_u64().unwrap_or(0),
        created_at: ms("created_at")?.ok_or_else(|| corrupt("created_at"))?,
    })
}

pub(super) fn merge_from_row(row: &AnyRow) -> Result<MergeRecord, StoreError> {
    let reason: String = row.try_get("reason")?;
    Ok(MergeRecord {
        id: id(&row.try_get::<String, _>("id")?)?,
        project_id: id(&row.try_get::<String, _>("project_id")?)?,
        source: id(&row.try_get::<String, _>("source_person_id")?)?,
        target: id(&row.try_get::<String, _>("target_person_id")?)?,
        distinct_ids: serde_json::from_str(&row.try_get::<String, _>("distinct_ids")?)
            .map_err(|e| StoreError::Corrupt(format!("merge distinct ids: {e}")))?,
        source_snapshot: snapshot_from_json(&row.try_get::<String, _>("source_snapshot")?)?,
        reason: MergeReason::parse(&reason)
            .ok_or_else(|| StoreError::Corrupt(format!("merge reason `{reason}`")))?,
        message_id: row.try_get("message_id")?,
        merged_at: time(row.try_get("merged_at")?)?,
        split_at: row
            .try_get::<Option<i64>, _>("split_at")?
            .map(time)
            .transpose()?,
    })
}

pub(super) async fn fetch_person<'e>(
    db: impl Executor<'e, Database = Any>,
    project: ProjectId,
    person: PersonId,
    lock: &str,
) -> Result<Option<Person>, StoreError> {
    sqlx::query(&format!(
        "SELECT {PERSON_COLUMNS} FROM persons WHERE project_id = $1 AND id = $2{lock}"
    ))
    .bind(project.to_string())
    .bind(person.to_string())
    .fetch_optional(db)
    .await?
    .map(|r| person_from_row(&r))
    .transpose()
}

/// Writes whole person rows, new or existing, several per statement.
pub(super) async fn write_persons(
    tx: &mut Transaction<'_, Any>,
    persons: &[&Person],
) -> Result<(), StoreError> {
    for chunk in persons.chunks(ROWS) {
        let values = (0..chunk.len())
            .map(|i| {
                let b = 1 + 9 * i;
                format!(
                    "(${b}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO persons ({PERSON_COLUMNS}) VALUES {values} ON CONFLICT (id) DO UPDATE \
             SET is_identified = excluded.is_identified, properties = excluded.properties, \
             property_writes = excluded.property_writes, first_seen = excluded.first_seen, \
             last_seen = excluded.last_seen, event_count = excluded.event_count"
        );
        let mut query = sqlx::query(&sql);
        for p in chunk {
            query = query
                .bind(p.id.to_string())
                .bind(p.project_id.to_string())
                .bind(p.is_identified as i64)
                .bind(p.properties.values_json())
                .bind(p.properties.writes_json())
                .bind(p.first_seen.map(millis))
                .bind(p.last_seen.map(millis))
                .bind(p.event_count as i64)
                .bind(millis(p.created_at));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

pub(super) async fn ids_of<'e>(
    db: impl Executor<'e, Database = Any>,
    project: ProjectId,
    person: PersonId,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT distinct_id FROM person_distinct_ids WHERE project_id = $1 AND person_id = $2 \
         ORDER BY created_at, distinct_id",
    )
    .bind(project.to_string())
    .bind(person.to_string())
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
        .collect()
}

pub(super) async fn set_override(
    tx: &mut Transaction<'_, Any>,
    project: ProjectId,
    old: PersonId,
    distinct_id: &str,
    to: PersonId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO person_overrides (project_id, old_person_id, distinct_id, person_id, \
         updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, old_person_id, \
         distinct_id) DO UPDATE SET person_id = excluded.person_id, updated_at = excluded.updated_at",
    )
    .bind(project.to_string())
    .bind(old.to_string())
    .bind(distinct_id)
    .bind(to.to_string())
    .bind(millis(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Where the events of `person` went: itself if it exists, else the person it was
/// merged into (followed through a few hops), else `None` (deleted).
pub(super) async fn surviving(
    tx: &mut Transaction<'_, Any>,
    project: ProjectId,
    mut person: PersonId,
    lock: &str,
) -> Result<Option<Person>, StoreError> {
    for _ in 0..8 {
        if let Some(p) = fetch_person(&mut **tx, project, person, lock).await? {
            return Ok(Some(p));
        }
        let next: Option<String> = sqlx::query_scalar(
            "SELECT person_id FROM person_overrides WHERE project_id = $1 AND \
             old_person_id = $2 AND distinct_id = ''",
        )
        .bind(project.to_string())
        .bind(person.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        match next {
            Some(next) => person = id(&next)?,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Writes a change's audit entry, if it has one, in the change's transaction.
pub(super) async fn audited<T>(
    tx: &mut Transaction<'_, Any>,
    audit: AuditWith<'_, T>,
    outcome: &T,
) -> Result<(), StoreError> {
    if let Some(entry) = audit {
        insert_audit(tx, &entry(outcome)).await?;
    }
    Ok(())
}

/// Links `distinct_id` to `person` if the id has no person yet; whether it did.
pub(super) async fn link_new_id(
    tx: &mut Transaction<'_, Any>,
    project: ProjectId,
    distinct_id: &str,
    person: PersonId,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO person_distinct_ids (project_id, distinct_id, person_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, distinct_id) DO NOTHING",
    )
    .bind(project.to_string())
    .bind(distinct_id)
    .bind(person.to_string())
    .bind(millis(at))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}
