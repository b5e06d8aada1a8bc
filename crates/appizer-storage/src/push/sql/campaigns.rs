//! Campaigns over SQL: every write names the version it read and moves it on, so two
//! writers never overwrite each other unseen (the loser learns the record as it is).

use appizer_core::push::{CampaignFilter, CampaignRecord, CampaignState};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::CampaignId;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::super::{CampaignUpdate, CampaignWrite};
use super::{corrupt, SqlPushStore};
use crate::metadata::{from_millis, insert_audit, parse_id};
use crate::{ProjectScope, StoreError};

pub(super) const COLUMNS: &str =
    "id, project_id, name, state, definition, version, created_at, updated_at";

pub(super) fn campaign_from_row(row: &AnyRow) -> Result<CampaignRecord, StoreError> {
    let state: String = row.try_get("state")?;
    let definition: String = row.try_get("definition")?;
    Ok(CampaignRecord {
        id: parse_id(&row.try_get::<String, _>("id")?, "campaign id")?,
        project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
        name: row.try_get("name")?,
        state: CampaignState::parse(&state).ok_or_else(|| corrupt("campaign state", &state))?,
        definition: serde_json::from_str(&definition)
            .map_err(|_| corrupt("campaign definition", "(not JSON)"))?,
        version: row.try_get::<i64, _>("version")?.max(0) as u64,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

pub(super) async fn fetch_campaign<'e>(
    db: impl Executor<'e, Database = Any>,
    scope: ProjectScope,
    id: CampaignId,
) -> Result<Option<CampaignRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM campaigns WHERE project_id = $1 AND id = $2"
    ))
    .bind(scope.project().to_string())
    .bind(id.to_string())
    .fetch_optional(db)
    .await?
    .as_ref()
    .map(campaign_from_row)
    .transpose()
}

/// Writes `u` in `tx` if the campaign is at `u.version`; whether it was.
pub(super) async fn write_at_version(
    tx: &mut sqlx::Transaction<'static, Any>,
    scope: ProjectScope,
    id: CampaignId,
    u: &CampaignUpdate,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE campaigns SET name = $1, state = $2, definition = $3, version = version + 1, \
         updated_at = $4 WHERE project_id = $5 AND id = $6 AND version = $7",
    )
    .bind(&u.name)
    .bind(u.state.as_str())
    .bind(u.definition.to_string())
    .bind(u.at.timestamp_millis())
    .bind(scope.project().to_string())
    .bind(id.to_string())
    .bind(u.version as i64)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

impl SqlPushStore {
    pub(super) async fn insert_campaign(
        &self,
        scope: ProjectScope,
        c: &CampaignRecord,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        sqlx::query(&format!(
            "INSERT INTO campaigns ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(c.id.to_string())
        .bind(scope.project().to_string())
        .bind(&c.name)
        .bind(c.state.as_str())
        .bind(c.definition.to_string())
        .bind(c.version as i64)
        .bind(c.created_at.timestamp_millis())
        .bind(c.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn campaign_by_id(
        &self,
        scope: ProjectScope,
        id: CampaignId,
    ) -> Result<Option<CampaignRecord>, StoreError> {
        fetch_campaign(&self.pool, scope, id).await
    }

    pub(super) async fn list_campaigns(
        &self,
        scope: ProjectScope,
        filter: &CampaignFilter,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        // The state from the closed set, not user text.
        let state = filter
            .state
            .map(|s| format!(" AND state = '{}'", s.as_str()))
            .unwrap_or_default();
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM campaigns WHERE project_id = $1 AND id > $2{state} \
             ORDER BY id LIMIT $3"
        ))
        .bind(scope.project().to_string())
        .bind(filter.after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(filter.limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(campaign_from_row)
        .collect()
    }

    /// What a write that touched no row means: gone, or changed since it was read.
    pub(super) async fn refused_write(
        &self,
        scope: ProjectScope,
        id: CampaignId,
    ) -> Result<CampaignWrite, StoreError> {
        Ok(match self.campaign_by_id(scope, id).await? {
            None => CampaignWrite::Missing,
            Some(current) => CampaignWrite::Stale(current),
        })
    }

    pub(super) async fn change_campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
        u: &CampaignUpdate,
        audit: &NewAuditEntry,
    ) -> Result<CampaignWrite, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if !write_at_version(&mut tx, scope, id, u).await? {
            drop(tx);
            return self.refused_write(scope, id).await;
        }
        insert_audit(&mut tx, audit).await?;
        // The record as this write left it, read before another can change it.
        let record = fetch_campaign(&mut *tx, scope, id).await?;
        tx.commit().await?;
        Ok(CampaignWrite::Done(record))
    }

    pub(super) async fn remove_campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
        version: u64,
        audit: &NewAuditEntry,
    ) -> Result<CampaignWrite, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let removed =
            sqlx::query("DELETE FROM campaigns WHERE project_id = $1 AND id = $2 AND version = $3")
                .bind(scope.project().to_string())
                .bind(id.to_string())
                .bind(version as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        if !removed {
            drop(tx);
            return self.refused_write(scope, id).await;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(CampaignWrite::Done(None))
    }
}
