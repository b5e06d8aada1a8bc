//! Messages and their outbox over SQL.
//!
//! The fan-out is one `INSERT ... SELECT` from the devices of the audience, so a
//! message to a million devices never passes through this process's memory. The
//! delivery loop takes records in due order under a lease (PostgreSQL skips rows another
//! loop has locked) and completes them in batches.

use std::collections::{BTreeMap, HashMap};

use appizer_core::push::{
    Audience, Delivery, DeliveryCounts, DeliveryDevice, DeliveryOutcome, DeliveryState,
    DeviceState, MessageRecord, NewMessage, Platform, WebKeys,
};
use appizer_core::{DeviceId, MessageId};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{corrupt, SqlPushStore};
use crate::metadata::{from_millis, parse_id, Backend};
use crate::{ProjectScope, StoreError};

const MESSAGE_COLUMNS: &str = "id, project_id, idempotency_key, content, audience, platforms, \
     campaign_id, variant, devices, created_at";

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("push vocabulary serializes")
}

fn parse_json<T: serde::de::DeserializeOwned>(name: &str, value: String) -> Result<T, StoreError> {
    serde_json::from_str(&value).map_err(|_| corrupt(name, &value))
}

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, StoreError> {
    let text = |name: &str| row.try_get::<String, _>(name);
    Ok(MessageRecord {
        id: parse_id(&text("id")?, "message id")?,
        project_id: parse_id(&text("project_id")?, "project id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        content: parse_json("message content", text("content")?)?,
        audience: parse_json("message audience", text("audience")?)?,
        platforms: parse_json("message platforms", text("platforms")?)?,
        campaign_id: row.try_get("campaign_id")?,
        variant: row.try_get("variant")?,
        devices: row.try_get::<i64, _>("devices")?.max(0) as u64,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

/// `$first, $first+1, ...` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The condition on devices `d` of the audience, its values binding from `$4`.
fn audience_condition(audience: &Audience) -> (String, Vec<String>) {
    match audience {
        Audience::Segment(id) => (
            "d.distinct_id IN (SELECT pd.distinct_id FROM person_distinct_ids pd \
             JOIN segment_members sm ON sm.person_id = pd.person_id \
             WHERE pd.project_id = $1 AND sm.segment_id = $4)"
                .into(),
            vec![id.to_string()],
        ),
        Audience::Persons(ids) => (
            format!(
                "d.distinct_id IN (SELECT distinct_id FROM person_distinct_ids \
                 WHERE project_id = $1 AND person_id IN ({}))",
                placeholders(4, ids.len())
            ),
            ids.iter().map(ToString::to_string).collect(),
        ),
        // The persons of the ids, and the ids themselves (a device registered before
        // its id had a person).
        Audience::DistinctIds(ids) => {
            let list = placeholders(4, ids.len());
            (
                format!(
                    "(d.distinct_id IN ({list}) OR d.distinct_id IN (SELECT a.distinct_id \
                     FROM person_distinct_ids a JOIN person_distinct_ids b \
                     ON b.project_id = a.project_id AND b.person_id = a.person_id \
                     WHERE a.project_id = $1 AND b.distinct_id IN ({list})))"
                ),
                ids.clone(),
            )
        }
        Audience::Devices(ids) => (
            format!("d.id IN ({})", placeholders(4, ids.len())),
            ids.iter().map(ToString::to_string).collect(),
        ),
        // Queued by its run, page by page (`queue_run_page`): nothing at once.
        Audience::Campaign { .. } => ("1 = 0".into(), Vec::new()),
    }
}

async fn message_by_key(
    tx: &mut Transaction<'static, Any>,
    scope: ProjectScope,
    key: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM push_messages WHERE project_id = $1 AND idempotency_key = $2"
    ))
    .bind(scope.project().to_string())
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(message_from_row)
    .transpose()
}

impl SqlPushStore {
    pub(super) async fn queue_message_once(
        &self,
        scope: ProjectScope,
        m: &NewMessage,
        keys_since: DateTime<Utc>,
    ) -> Result<(MessageRecord, bool), StoreError> {
        let project = scope.project().to_string();
        let mut tx = self.backend.begin_write(&self.pool).await?;
        if let Some(key) = &m.idempotency_key {
            if let Some(first) = message_by_key(&mut tx, scope, key).await? {
                if first.created_at >= keys_since {
                    tx.commit().await?;
                    return Ok((first, false));
                }
                sqlx::query("UPDATE push_messages SET idempotency_key = NULL WHERE id = $1")
                    .bind(first.id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let at = m.created_at.timestamp_millis();
        sqlx::query(&format!(
            "INSERT INTO push_messages ({MESSAGE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)"
        ))
        .bind(m.id.to_string())
        .bind(project.clone())
        .bind(m.idempotency_key.clone())
        .bind(m.content.to_string())
        .bind(json_text(&m.audience))
        .bind(json_text(&m.platforms))
        .bind(m.campaign_id.clone())
        .bind(m.variant.clone())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let platforms = m
            .platforms
            .iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let (condition, values) = audience_condition(&m.audience);
        let devices = if platforms.is_empty() {
            0
        } else {
            let sql = format!(
                "INSERT INTO push_outbox (message_id, device_id, project_id, platform, state, \
                 attempts, due_at, leased_until, reason, updated_at) \
                 SELECT $2, d.id, d.project_id, d.platform, 'queued', 0, $3, 0, NULL, $3 \
                 FROM push_devices d WHERE d.project_id = $1 AND d.state = 'active' \
                 AND d.platform IN ({platforms}) AND {condition}"
            );
            let mut insert = sqlx::query(&sql)
                .bind(project.clone())
                .bind(m.id.to_string())
                .bind(at);
            for v in &values {
                insert = insert.bind(v);
            }
            insert.execute(&mut *tx).await?.rows_affected()
        };
        sqlx::query("UPDATE push_messages SET devices = $1 WHERE id = $2")
            .bind(devices as i64)
            .bind(m.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let record = MessageRecord {
            id: m.id,
            project_id: scope.project(),
            idempotency_key: m.idempotency_key.clone(),
            content: m.content.clone(),
            audience: m.audience.clone(),
            platforms: m.platforms.clone(),
            campaign_id: m.campaign_id.clone(),
            variant: m.variant.clone(),
            devices,
            created_at: from_millis(at)?,
        };
        Ok((record, true))
    }

    pub(super) async fn message_record(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM push_messages WHERE project_id = $1 AND id = $2"
        ))
        .bind(scope.project().to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(message_from_row)
        .transpose()
    }

    pub(super) async fn counts(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<DeliveryCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT platform, state, reason, COUNT(*) AS n FROM push_outbox \
             WHERE project_id = $1 AND message_id = $2 GROUP BY platform, state, reason",
        )
        .bind(scope.project().to_string())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut counts = DeliveryCounts::default();
        for row in &rows {
            let platform: String = row.try_get("platform")?;
            let state: String = row.try_get("state")?;
            let reason: Option<String> = row.try_get("reason")?;
            let n = row.try_get::<i64, _>("n")?.max(0) as u64;
            let state =
                DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?;
            let of_platform = counts.by_platform.entry(platform).or_default();
            let reason = reason.unwrap_or_else(|| "unknown".into());
            match state {
                DeliveryState::Queued => {
                    counts.queued += n;
                    of_platform.queued += n;
                }
                DeliveryState::Sent => {
                    counts.sent += n;
                    of_platform.sent += n;
                }
                DeliveryState::Failed => {
                    counts.failed += n;
                    of_platform.failed += n;
                    *counts.failed_by_reason.entry(reason).or_default() += n;
                }
                DeliveryState::Retired => {
                    counts.retired += n;
                    of_platform.retired += n;
                    *counts.retired_by_reason.entry(reason).or_default() += n;
                }
                DeliveryState::Held => {
                    counts.held += n;
                    of_platform.held += n;
                }
                DeliveryState::Cancelled => {
                    counts.cancelled += n;
                    of_platform.cancelled += n;
                }
            }
        }
        Ok(counts)
    }

    pub(super) async fn take(
        &self,
        platform: Option<Platform>,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = now.timestamp_millis();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF o SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // A platform from the closed set, not user text.
        let only = platform
            .map(|p| format!(" AND o.platform = '{}'", p.as_str()))
            .unwrap_or_default();
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let rows = sqlx::query(&format!(
            "SELECT o.message_id, o.device_id, o.project_id, o.platform, o.attempts, o.rendered, \
             d.address, d.p256dh, d.auth, d.distinct_id, d.state AS device_state \
             FROM push_outbox o LEFT JOIN push_devices d ON d.id = o.device_id \
             WHERE o.state = 'queued' AND o.due_at <= $1 AND o.leased_until <= $1{only} \
             ORDER BY o.due_at LIMIT $2{lock}"
        ))
        .bind(now)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in &rows {
            taken.push(delivery_from_row(row)?);
        }
        let mut by_message: BTreeMap<MessageId, Vec<DeviceId>> = BTreeMap::new();
        for d in &taken {
            by_message
                .entry(d.message_id)
                .or_default()
                .push(d.device_id);
        }
        for (message, devices) in &by_message {
            for chunk in devices.chunks(500) {
                let sql = format!(
                    "UPDATE push_outbox SET leased_until = $1, attempts = attempts + 1 \
                     WHERE message_id = $2 AND device_id IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut update = sqlx::query(&sql)
                    .bind(lease_until.timestamp_millis())
                    .bind(message.to_string());
                for device in chunk {
                    update = update.bind(device.to_string());
                }
                update.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(taken)
    }

    pub(super) async fn complete(
        &self,
        done: &[(MessageId, DeviceId, DeliveryOutcome)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let at = at.timestamp_millis();
        // Final outcomes grouped by (state, reason, message): one statement per group.
        let mut groups: HashMap<(DeliveryState, Option<&str>, MessageId), Vec<DeviceId>> =
            HashMap::new();
        let mut retired_devices: HashMap<&str, Vec<DeviceId>> = HashMap::new();
        let mut retries = Vec::new();
        for (message, device, outcome) in done {
            let (state, reason) = match outcome {
                DeliveryOutcome::Sent => (DeliveryState::Sent, None),
                DeliveryOutcome::Failed(reason) => (DeliveryState::Failed, Some(reason.as_str())),
                DeliveryOutcome::Retired(reason) => {
                    retired_devices.entry(reason).or_default().push(*device);
                    (DeliveryState::Retired, Some(reason.as_str()))
                }
                DeliveryOutcome::Retry { due, reason } => {
                    retries.push((message, device, due.timestamp_millis(), reason));
                    continue;
                }
                DeliveryOutcome::Held => (DeliveryState::Held, None),
                DeliveryOutcome::Cancelled => (DeliveryState::Cancelled, None),
            };
            groups
                .entry((state, reason, *message))
                .or_default()
                .push(*device);
        }
        let mut tx = self.backend.begin_write(&self.pool).await?;
        for ((state, reason, message), devices) in &groups {
            for chunk in devices.chunks(500) {
                let sql = format!(
                    "UPDATE push_outbox SET state = $1, reason = $2, leased_until = 0, \
                     updated_at = $3 WHERE message_id = $4 AND device_id IN ({})",
                    placeholders(5, chunk.len())
                );
                let mut update = sqlx::query(&sql)
                    .bind(state.as_str())
                    .bind(*reason)
                    .bind(at)
                    .bind(message.to_string());
                for device in chunk {
                    update = update.bind(device.to_string());
                }
                update.execute(&mut *tx).await?;
            }
        }
        for (reason, devices) in &retired_devices {
            for chunk in devices.chunks(500) {
                let sql = format!(
                    "UPDATE push_devices SET state = 'retired', retired_reason = $1, \
                     updated_at = $2 WHERE state = 'active' AND id IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut update = sqlx::query(&sql).bind(*reason).bind(at);
                for device in chunk {
                    update = update.bind(device.to_string());
                }
                update.execute(&mut *tx).await?;
            }
        }
        for (message, device, due, reason) in retries {
            sqlx::query(
                "UPDATE push_outbox SET due_at = $1, reason = $2, leased_until = 0, \
                 updated_at = $3 WHERE message_id = $4 AND device_id = $5",
            )
            .bind(due)
            .bind(reason.as_str())
            .bind(at)
            .bind(message.to_string())
            .bind(device.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn release(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE push_outbox SET leased_until = 0 WHERE state = 'queued' AND leased_until > 0",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    let platform: String = row.try_get("platform")?;
    let device = match row.try_get::<Option<String>, _>("address")? {
        None => None,
        Some(address) => {
            let state: String = row.try_get("device_state")?;
            let web_keys = match (
                row.try_get::<Option<String>, _>("p256dh")?,
                row.try_get::<Option<String>, _>("auth")?,
            ) {
                (Some(p256dh), Some(auth)) => Some(WebKeys { p256dh, auth }),
                _ => None,
            };
            Some(DeliveryDevice {
                address,
                web_keys,
                distinct_id: row.try_get("distinct_id")?,
                state: DeviceState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
            })
        }
    };
    Ok(Delivery {
        message_id: parse_id(&row.try_get::<String, _>("message_id")?, "message id")?,
        device_id: parse_id(&row.try_get::<String, _>("device_id")?, "device id")?,
        project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
        platform: Platform::parse(&platform).ok_or_else(|| corrupt("platform", &platform))?,
        attempts: (row.try_get::<i64, _>("attempts")?.max(0) as u32) + 1,
        device,
        rendered: row.try_get("rendered")?,
    })
}
