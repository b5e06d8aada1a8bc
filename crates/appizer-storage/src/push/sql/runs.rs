//! Campaign runs over SQL: a run is recorded once with the campaign's move to running;
//! each page of its walk writes its messages, its outbox records and its cursor in one
//! transaction fenced by the cursor it read, so a page is queued once however often the
//! runner crashes, restarts or races another.

use appizer_core::push::{
    CampaignRecord, CampaignRun, CampaignState, DeliveryState, RunPage, RunState,
};
use appizer_core::{CampaignId, PersonId};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::super::{CampaignUpdate, CampaignWrite};
use super::campaigns::{campaign_from_row, fetch_campaign, write_at_version, COLUMNS};
use super::triggers::insert_deliveries;
use super::{corrupt, SqlPushStore};
use crate::metadata::{from_millis, parse_id};
use crate::{ProjectScope, StoreError};

const RUN_COLUMNS: &str = "campaign_id, run_key, phase, project_id, state, due_at, cursor, \
     assigned, queued, started_at, finished_at, decision";

fn run_from_row(row: &AnyRow) -> Result<CampaignRun, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(CampaignRun {
        campaign_id: parse_id(&row.try_get::<String, _>("campaign_id")?, "campaign id")?,
        key: row.try_get("run_key")?,
        phase: row.try_get("phase")?,
        project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
        state: RunState::parse(&state).ok_or_else(|| corrupt("run state", &state))?,
        due_at: from_millis(row.try_get("due_at")?)?,
        cursor: row
            .try_get::<Option<String>, _>("cursor")?
            .map(|c| parse_id::<PersonId>(&c, "person id"))
            .transpose()?,
        assigned: row.try_get::<i64, _>("assigned")?.max(0) as u64,
        queued: row.try_get::<i64, _>("queued")?.max(0) as u64,
        started_at: from_millis(row.try_get("started_at")?)?,
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(from_millis)
            .transpose()?,
        decision: row
            .try_get::<Option<String>, _>("decision")?
            .map(|d| serde_json::from_str(&d).map_err(|_| corrupt("run decision", &d)))
            .transpose()?,
    })
}

impl SqlPushStore {
    pub(super) async fn campaigns_in_state(
        &self,
        state: CampaignState,
        after: Option<CampaignId>,
        limit: u32,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM campaigns WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(state.as_str())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(campaign_from_row)
        .collect()
    }

    pub(super) async fn begin_run(
        &self,
        scope: ProjectScope,
        run: &CampaignRun,
        update: &CampaignUpdate,
    ) -> Result<CampaignWrite, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if !write_at_version(&mut tx, scope, run.campaign_id, update).await? {
            drop(tx);
            return self.refused_write(scope, run.campaign_id).await;
        }
        sqlx::query(&format!(
            "INSERT INTO campaign_runs ({RUN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (campaign_id, run_key, phase) DO NOTHING"
        ))
        .bind(run.campaign_id.to_string())
        .bind(&run.key)
        .bind(&run.phase)
        .bind(scope.project().to_string())
        .bind(run.state.as_str())
        .bind(run.due_at.timestamp_millis())
        .bind(run.cursor.map(|c| c.to_string()))
        .bind(run.assigned as i64)
        .bind(run.queued as i64)
        .bind(run.started_at.timestamp_millis())
        .bind(run.finished_at.map(|t| t.timestamp_millis()))
        .bind(run.decision.as_ref().map(|d| d.to_string()))
        .execute(&mut *tx)
        .await?;
        let record = fetch_campaign(&mut *tx, scope, run.campaign_id).await?;
        tx.commit().await?;
        Ok(CampaignWrite::Done(record))
    }

    pub(super) async fn campaign_runs(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
    ) -> Result<Vec<CampaignRun>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM campaign_runs WHERE project_id = $1 AND campaign_id = $2 \
             ORDER BY due_at, started_at, phase"
        ))
        .bind(scope.project().to_string())
        .bind(campaign.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }

    pub(super) async fn write_run_page(
        &self,
        scope: ProjectScope,
        page: &RunPage,
    ) -> Result<bool, StoreError> {
        let project = scope.project().to_string();
        let mut tx = self.backend.begin_write(&self.pool).await?;
        // The fence: the run is where this page was read from, and still sending.
        let after = page.after.map(|a| a.to_string());
        let moved = sqlx::query(
            "UPDATE campaign_runs SET cursor = $1, assigned = assigned + $2 \
             WHERE project_id = $3 AND campaign_id = $4 AND run_key = $5 AND phase = $6 \
             AND state = 'sending' AND (cursor = $7 OR (cursor IS NULL AND $8 = 1))",
        )
        .bind(page.cursor.to_string())
        .bind(page.assigned as i64)
        .bind(&project)
        .bind(page.campaign_id.to_string())
        .bind(&page.key)
        .bind(&page.phase)
        .bind(after.clone().unwrap_or_default())
        .bind(i64::from(after.is_none()))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !moved {
            return Ok(false);
        }
        let queued =
            insert_deliveries(&mut tx, scope, &page.messages, &page.deliveries, page.at).await?;
        sqlx::query(
            "UPDATE campaign_runs SET queued = queued + $1 \
             WHERE campaign_id = $2 AND run_key = $3 AND phase = $4",
        )
        .bind(queued as i64)
        .bind(page.campaign_id.to_string())
        .bind(&page.key)
        .bind(&page.phase)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn end_run(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        key: &str,
        phase: &str,
        state: RunState,
        update: &CampaignUpdate,
    ) -> Result<CampaignWrite, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if !write_at_version(&mut tx, scope, campaign, update).await? {
            drop(tx);
            return self.refused_write(scope, campaign).await;
        }
        sqlx::query(
            "UPDATE campaign_runs SET state = $1, finished_at = $2 \
             WHERE project_id = $3 AND campaign_id = $4 AND run_key = $5 AND phase = $6",
        )
        .bind(state.as_str())
        .bind(update.at.timestamp_millis())
        .bind(scope.project().to_string())
        .bind(campaign.to_string())
        .bind(key)
        .bind(phase)
        .execute(&mut *tx)
        .await?;
        let record = fetch_campaign(&mut *tx, scope, campaign).await?;
        tx.commit().await?;
        Ok(CampaignWrite::Done(record))
    }

    pub(super) async fn move_deliveries(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if from.is_empty() {
            return Ok(0);
        }
        // States from the closed set, not user text.
        let states = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(sqlx::query(&format!(
            "UPDATE push_outbox SET state = $1, updated_at = $2 \
             WHERE state IN ({states}) AND leased_until <= $2 AND message_id IN \
             (SELECT id FROM push_messages WHERE project_id = $3 AND campaign_id = $4)"
        ))
        .bind(to.as_str())
        .bind(at.timestamp_millis())
        .bind(scope.project().to_string())
        .bind(campaign.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
