//! A triggered campaign's pending sends over SQL: recorded once per trigger event,
//! cancelled by a later cancel event, and sent in one transaction with their outbox
//! records, fenced by their state (a send is written once however often it is tried).

use appizer_core::push::{CampaignTrigger, NewDelivery, NewMessage, TriggerState};
use appizer_core::{CampaignId, MessageId, PersonId};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{corrupt, SqlPushStore};
use crate::metadata::{from_millis, parse_id};
use crate::{ProjectScope, StoreError};

const COLUMNS: &str = "campaign_id, event_id, project_id, person_id, distinct_id, properties, \
     state, triggered_at, due_at, updated_at";

fn trigger_from_row(row: &AnyRow) -> Result<CampaignTrigger, StoreError> {
    let state: String = row.try_get("state")?;
    let properties: String = row.try_get("properties")?;
    Ok(CampaignTrigger {
        campaign_id: parse_id(&row.try_get::<String, _>("campaign_id")?, "campaign id")?,
        event_id: row.try_get("event_id")?,
        project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
        person_id: parse_id(&row.try_get::<String, _>("person_id")?, "person id")?,
        distinct_id: row.try_get("distinct_id")?,
        properties: serde_json::from_str::<Map<String, Value>>(&properties)
            .map_err(|_| corrupt("trigger properties", &properties))?,
        state: TriggerState::parse(&state).ok_or_else(|| corrupt("trigger state", &state))?,
        triggered_at: from_millis(row.try_get("triggered_at")?)?,
        due_at: from_millis(row.try_get("due_at")?)?,
    })
}

/// Rows per multi-row insert.
const ROWS_PER_INSERT: usize = 500;

/// Writes `messages` (if not there) and `deliveries` (one per message and device) in
/// `tx`; returns the deliveries written.
pub(super) async fn insert_deliveries(
    tx: &mut Transaction<'static, Any>,
    scope: ProjectScope,
    messages: &[NewMessage],
    deliveries: &[NewDelivery],
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let project = scope.project().to_string();
    for m in messages {
        sqlx::query(
            "INSERT INTO push_messages (id, project_id, idempotency_key, content, audience, \
             platforms, campaign_id, variant, devices, created_at) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, 0, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(m.id.to_string())
        .bind(&project)
        .bind(m.content.to_string())
        .bind(serde_json::to_string(&m.audience).expect("an audience serializes"))
        .bind(serde_json::to_string(&m.platforms).expect("platforms serialize"))
        .bind(m.campaign_id.clone())
        .bind(m.variant.clone())
        .bind(m.created_at.timestamp_millis())
        .execute(&mut **tx)
        .await?;
    }
    let at = at.timestamp_millis();
    let mut queued = 0u64;
    for chunk in deliveries.chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 5 * i;
                format!(
                    "(${}, ${}, $1, ${}, 'queued', 0, ${}, 0, NULL, $2, ${})",
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO push_outbox (message_id, device_id, project_id, platform, state, \
             attempts, due_at, leased_until, reason, updated_at, rendered) VALUES {} \
             ON CONFLICT (message_id, device_id) DO NOTHING",
            rows.join(", ")
        );
        let mut insert = sqlx::query(&sql).bind(&project).bind(at);
        for d in chunk {
            insert = insert
                .bind(d.message_id.to_string())
                .bind(d.device_id.to_string())
                .bind(d.platform.as_str())
                .bind(d.due_at.timestamp_millis())
                .bind(d.rendered.clone());
        }
        queued += insert.execute(&mut **tx).await?.rows_affected();
    }
    // Each person once per message, at their first delivery's due time.
    let mut sends: std::collections::BTreeMap<(PersonId, MessageId), i64> = Default::default();
    for d in deliveries {
        if let Some(p) = d.person_id {
            let at = d.due_at.timestamp_millis();
            let e = sends.entry((p, d.message_id)).or_insert(at);
            *e = (*e).min(at);
        }
    }
    let sends: Vec<_> = sends.into_iter().collect();
    for chunk in sends.chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
            .collect();
        let sql = format!(
            "INSERT INTO push_person_sends (project_id, person_id, message_id, at) VALUES {} \
             ON CONFLICT (project_id, person_id, message_id) DO NOTHING",
            rows.join(", ")
        );
        let mut insert = sqlx::query(&sql).bind(&project);
        for ((person, message), at) in chunk {
            insert = insert
                .bind(person.to_string())
                .bind(message.to_string())
                .bind(*at);
        }
        insert.execute(&mut **tx).await?;
    }
    for m in messages {
        sqlx::query(
            "UPDATE push_messages SET devices = \
             (SELECT COUNT(*) FROM push_outbox WHERE message_id = $1) WHERE id = $1",
        )
        .bind(m.id.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(queued)
}

impl SqlPushStore {
    pub(super) async fn person_sends(
        &self,
        scope: ProjectScope,
        persons: &[PersonId],
        since: DateTime<Utc>,
    ) -> Result<Vec<(PersonId, DateTime<Utc>)>, StoreError> {
        let mut out = Vec::new();
        for chunk in persons.chunks(ROWS_PER_INSERT) {
            let list = (0..chunk.len())
                .map(|i| format!("${}", i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT person_id, at FROM push_person_sends \
                 WHERE project_id = $1 AND at > $2 AND person_id IN ({list})"
            );
            let mut query = sqlx::query(&sql)
                .bind(scope.project().to_string())
                .bind(since.timestamp_millis());
            for p in chunk {
                query = query.bind(p.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push((
                    parse_id(&row.try_get::<String, _>("person_id")?, "person id")?,
                    from_millis(row.try_get("at")?)?,
                ));
            }
        }
        Ok(out)
    }

    pub(super) async fn insert_trigger(
        &self,
        scope: ProjectScope,
        t: &CampaignTrigger,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(&format!(
            "INSERT INTO campaign_triggers ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8) \
             ON CONFLICT (campaign_id, event_id) DO NOTHING"
        ))
        .bind(t.campaign_id.to_string())
        .bind(&t.event_id)
        .bind(scope.project().to_string())
        .bind(t.person_id.to_string())
        .bind(&t.distinct_id)
        .bind(Value::Object(t.properties.clone()).to_string())
        .bind(t.state.as_str())
        .bind(t.triggered_at.timestamp_millis())
        .bind(t.due_at.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    pub(super) async fn latest_trigger(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        person: PersonId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(triggered_at) FROM campaign_triggers \
             WHERE campaign_id = $1 AND person_id = $2 AND project_id = $3",
        )
        .bind(campaign.to_string())
        .bind(person.to_string())
        .bind(scope.project().to_string())
        .fetch_one(&self.pool)
        .await?;
        at.map(from_millis).transpose()
    }

    pub(super) async fn cancel_pending(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        person: PersonId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE campaign_triggers SET state = 'cancelled', updated_at = $1 \
             WHERE campaign_id = $2 AND person_id = $3 AND project_id = $4 \
             AND state = 'pending' AND triggered_at <= $5",
        )
        .bind(at.timestamp_millis())
        .bind(campaign.to_string())
        .bind(person.to_string())
        .bind(scope.project().to_string())
        .bind(until.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub(super) async fn pending_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignTrigger>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM campaign_triggers WHERE state = 'pending' AND due_at <= $1 \
             ORDER BY due_at LIMIT $2"
        ))
        .bind(now.timestamp_millis())
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(trigger_from_row)
        .collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn close_trigger(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        event_id: &str,
        state: TriggerState,
        messages: &[NewMessage],
        deliveries: &[NewDelivery],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let ended = sqlx::query(
            "UPDATE campaign_triggers SET state = $1, updated_at = $2 \
             WHERE campaign_id = $3 AND event_id = $4 AND project_id = $5 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(at.timestamp_millis())
        .bind(campaign.to_string())
        .bind(event_id)
        .bind(scope.project().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !ended {
            return Ok(false);
        }
        insert_deliveries(&mut tx, scope, messages, deliveries, at).await?;
        tx.commit().await?;
        Ok(true)
    }
}
