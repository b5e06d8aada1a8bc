//! [`PushStore`] over SQL, in the dialect SQLite and PostgreSQL both accept: devices
//! and providers here, messages and the outbox in `outbox`, campaigns in `campaigns`.

mod audience;
mod campaigns;
mod outbox;
mod runs;
mod triggers;

use appizer_core::push::{
    CampaignFilter, CampaignRecord, CampaignRun, CampaignState, CampaignTrigger, Delivery,
    DeliveryCounts, DeliveryOutcome, DeliveryState, Device, DeviceFilter, DeviceState,
    MessageRecord, NewDelivery, NewDevice, NewMessage, Platform, Provider, ProviderRecord, RunPage,
    RunState, TriggerState, WebKeys,
};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{CampaignId, DeviceId, MessageId, PersonId};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{CampaignUpdate, CampaignWrite, PushStore, ReachQuery, Reachable, OPTED_OUT};
use crate::metadata::{from_millis, insert_audit, parse_id, Backend};
use crate::{ProjectScope, StoreError};

/// The device columns, with the person of its distinct id now (`pd`).
const SELECT: &str = "SELECT d.id, d.project_id, d.platform, d.address, d.p256dh, d.auth, \
     d.distinct_id, pd.person_id, d.app_id, d.locale, d.timezone, d.state, d.retired_reason, \
     d.created_at, d.updated_at FROM push_devices d LEFT JOIN person_distinct_ids pd \
     ON pd.project_id = d.project_id AND pd.distinct_id = d.distinct_id";

#[derive(Debug, Clone)]
pub struct SqlPushStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlPushStore {
    /// A device store over the metadata store's pool (its migrations create the table).
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }
}

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("device {what} `{text}`"))
}

pub(super) fn device_from_row(row: &AnyRow) -> Result<Device, StoreError> {
    let platform: String = row.try_get("platform")?;
    let state: String = row.try_get("state")?;
    let keys = match (
        row.try_get::<Option<String>, _>("p256dh")?,
        row.try_get::<Option<String>, _>("auth")?,
    ) {
        (Some(p256dh), Some(auth)) => Some(WebKeys { p256dh, auth }),
        _ => None,
    };
    Ok(Device {
        id: parse_id(&row.try_get::<String, _>("id")?, "device id")?,
        project_id: parse_id(&row.try_get::<String, _>("project_id")?, "project id")?,
        platform: Platform::parse(&platform).ok_or_else(|| corrupt("platform", &platform))?,
        address: row.try_get("address")?,
        web_keys: keys,
        distinct_id: row.try_get("distinct_id")?,
        person_id: row
            .try_get::<Option<String>, _>("person_id")?
            .map(|p| parse_id(&p, "person id"))
            .transpose()?,
        app_id: row.try_get("app_id")?,
        locale: row.try_get("locale")?,
        timezone: row.try_get("timezone")?,
        state: DeviceState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        retired_reason: row.try_get("retired_reason")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

impl SqlPushStore {
    async fn at_address(
        &self,
        scope: ProjectScope,
        platform: Platform,
        address: &str,
    ) -> Result<Option<Device>, StoreError> {
        sqlx::query(&format!(
            "{SELECT} WHERE d.project_id = $1 AND d.platform = $2 AND d.address = $3"
        ))
        .bind(scope.project().to_string())
        .bind(platform.as_str())
        .bind(address)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(device_from_row)
        .transpose()
    }
}

#[async_trait]
impl PushStore for SqlPushStore {
    async fn register(
        &self,
        scope: ProjectScope,
        d: &NewDevice,
    ) -> Result<(Device, bool), StoreError> {
        let at = d.at.timestamp_millis();
        let (p256dh, auth) = match &d.web_keys {
            Some(k) => (Some(k.p256dh.as_str()), Some(k.auth.as_str())),
            None => (None, None),
        };
        // Both statements take the device's fields as $1 to $10.
        let project = scope.project().to_string();
        let fields = |sql: &'static str| {
            sqlx::query(sql)
                .bind(project.clone())
                .bind(d.platform.as_str())
                .bind(d.address.clone())
                .bind(p256dh)
                .bind(auth)
                .bind(d.distinct_id.clone())
                .bind(d.app_id.clone())
                .bind(d.locale.clone())
                .bind(d.timezone.clone())
                .bind(at)
        };
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let created = fields(
            "INSERT INTO push_devices (project_id, platform, address, p256dh, auth, \
             distinct_id, app_id, locale, timezone, created_at, updated_at, state, \
             retired_reason, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, \
             'active', NULL, $11) ON CONFLICT (project_id, platform, address) DO NOTHING",
        )
        .bind(DeviceId::new().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !created {
            fields(
                "UPDATE push_devices SET p256dh = $4, auth = $5, distinct_id = $6, \
                 app_id = $7, locale = $8, timezone = $9, state = 'active', \
                 retired_reason = NULL, updated_at = $10 \
                 WHERE project_id = $1 AND platform = $2 AND address = $3",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let device = self
            .at_address(scope, d.platform, &d.address)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a registered device is not there".into()))?;
        Ok((device, created))
    }

    async fn import_devices(
        &self,
        scope: ProjectScope,
        devices: &[NewDevice],
    ) -> Result<u64, StoreError> {
        const COLUMNS: usize = 12;
        let mut added = 0;
        let mut tx = self.backend.begin_write(&self.pool).await?;
        for chunk in devices.chunks(400) {
            let rows = (0..chunk.len())
                .map(|r| {
                    let first = r * COLUMNS + 1;
                    let p: Vec<String> =
                        (first..first + COLUMNS).map(|i| format!("${i}")).collect();
                    format!("({}, 'active', NULL, {})", p[..11].join(", "), p[11])
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO push_devices (project_id, platform, address, p256dh, auth, \
                 distinct_id, app_id, locale, timezone, created_at, updated_at, state, \
                 retired_reason, id) VALUES {rows} \
                 ON CONFLICT (project_id, platform, address) DO NOTHING"
            );
            let mut insert = sqlx::query(&sql);
            for d in chunk {
                let at = d.at.timestamp_millis();
                insert = insert
                    .bind(scope.project().to_string())
                    .bind(d.platform.as_str())
                    .bind(d.address.clone())
                    .bind(d.web_keys.as_ref().map(|k| k.p256dh.clone()))
                    .bind(d.web_keys.as_ref().map(|k| k.auth.clone()))
                    .bind(d.distinct_id.clone())
                    .bind(d.app_id.clone())
                    .bind(d.locale.clone())
                    .bind(d.timezone.clone())
                    .bind(at)
                    .bind(at)
                    .bind(DeviceId::new().to_string());
            }
            added += insert.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn unregister(
        &self,
        scope: ProjectScope,
        platform: Platform,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError> {
        let done = sqlx::query(
            "UPDATE push_devices SET state = 'retired', retired_reason = $4, updated_at = $5 \
             WHERE project_id = $1 AND platform = $2 AND address = $3",
        )
        .bind(scope.project().to_string())
        .bind(platform.as_str())
        .bind(address)
        .bind(OPTED_OUT)
        .bind(at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.at_address(scope, platform, address).await
    }

    async fn get(&self, scope: ProjectScope, id: DeviceId) -> Result<Option<Device>, StoreError> {
        sqlx::query(&format!("{SELECT} WHERE d.project_id = $1 AND d.id = $2"))
            .bind(scope.project().to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn list(
        &self,
        scope: ProjectScope,
        filter: &DeviceFilter,
    ) -> Result<Vec<Device>, StoreError> {
        let mut sql = format!("{SELECT} WHERE d.project_id = $1");
        let mut binds = vec![scope.project().to_string()];
        let mut add = |condition: &str, value: String| {
            binds.push(value);
            sql.push_str(&format!(" AND {condition} ${}", binds.len()));
        };
        if let Some(person) = filter.person {
            add("pd.person_id =", person.to_string());
        }
        if let Some(platform) = filter.platform {
            add("d.platform =", platform.as_str().to_string());
        }
        if let Some(state) = filter.state {
            add("d.state =", state.as_str().to_string());
        }
        if let Some(after) = filter.after {
            add("d.id >", after.to_string());
        }
        sql.push_str(&format!(" ORDER BY d.id LIMIT {}", filter.limit.max(1)));
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_from_row)
            .collect()
    }

    async fn delete(
        &self,
        scope: ProjectScope,
        id: DeviceId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let done = sqlx::query("DELETE FROM push_devices WHERE project_id = $1 AND id = $2")
            .bind(scope.project().to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if done {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn put_provider(
        &self,
        scope: ProjectScope,
        r: &ProviderRecord,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO push_providers (project_id, provider, settings, sealed, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, provider) DO UPDATE SET \
             settings = excluded.settings, sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(scope.project().to_string())
        .bind(r.provider.as_str())
        .bind(r.settings.to_string())
        .bind(B64.encode(&r.sealed))
        .bind(r.updated_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn provider(
        &self,
        scope: ProjectScope,
        provider: Provider,
    ) -> Result<Option<ProviderRecord>, StoreError> {
        sqlx::query(
            "SELECT provider, settings, sealed, updated_at FROM push_providers \
             WHERE project_id = $1 AND provider = $2",
        )
        .bind(scope.project().to_string())
        .bind(provider.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(provider_from_row)
        .transpose()
    }

    async fn providers(&self, scope: ProjectScope) -> Result<Vec<ProviderRecord>, StoreError> {
        sqlx::query(
            "SELECT provider, settings, sealed, updated_at FROM push_providers \
             WHERE project_id = $1 ORDER BY provider",
        )
        .bind(scope.project().to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(provider_from_row)
        .collect()
    }

    async fn queue_message(
        &self,
        scope: ProjectScope,
        message: &NewMessage,
        keys_since: DateTime<Utc>,
    ) -> Result<(MessageRecord, bool), StoreError> {
        match self.queue_message_once(scope, message, keys_since).await {
            // Another request queued a message with the same key meanwhile
            // (PostgreSQL; SQLite writers take turns): answer that one.
            Err(StoreError::Conflict(_)) if message.idempotency_key.is_some() => {
                self.queue_message_once(scope, message, keys_since).await
            }
            other => other,
        }
    }

    async fn message(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.message_record(scope, id).await
    }

    async fn delivery_counts(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<DeliveryCounts, StoreError> {
        self.counts(scope, id).await
    }

    async fn take_deliveries(
        &self,
        platform: Option<Platform>,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.take(platform, now, limit, lease_until).await
    }

    async fn complete_deliveries(
        &self,
        done: &[(MessageId, DeviceId, DeliveryOutcome)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.complete(done, at).await
    }

    async fn release_deliveries(&self) -> Result<u64, StoreError> {
        self.release().await
    }

    async fn queued_deliveries(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_outbox WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn create_campaign(
        &self,
        scope: ProjectScope,
        campaign: &CampaignRecord,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        self.insert_campaign(scope, campaign, audit).await
    }

    async fn campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
    ) -> Result<Option<CampaignRecord>, StoreError> {
        self.campaign_by_id(scope, id).await
    }

    async fn campaigns(
        &self,
        scope: ProjectScope,
        filter: &CampaignFilter,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        self.list_campaigns(scope, filter).await
    }

    async fn update_campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
        update: &CampaignUpdate,
        audit: &NewAuditEntry,
    ) -> Result<CampaignWrite, StoreError> {
        self.change_campaign(scope, id, update, audit).await
    }

    async fn delete_campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
        version: u64,
        audit: &NewAuditEntry,
    ) -> Result<CampaignWrite, StoreError> {
        self.remove_campaign(scope, id, version, audit).await
    }

    async fn reachable(
        &self,
        scope: ProjectScope,
        query: &ReachQuery,
    ) -> Result<Vec<Reachable>, StoreError> {
        self.reachable_page(scope, query).await
    }

    async fn campaigns_in(
        &self,
        state: CampaignState,
        after: Option<CampaignId>,
        limit: u32,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        self.campaigns_in_state(state, after, limit).await
    }

    async fn start_run(
        &self,
        scope: ProjectScope,
        run: &CampaignRun,
        update: &CampaignUpdate,
    ) -> Result<CampaignWrite, StoreError> {
        self.begin_run(scope, run, update).await
    }

    async fn runs(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
    ) -> Result<Vec<CampaignRun>, StoreError> {
        self.campaign_runs(scope, campaign).await
    }

    async fn queue_run_page(
        &self,
        scope: ProjectScope,
        page: &RunPage,
    ) -> Result<bool, StoreError> {
        self.write_run_page(scope, page).await
    }

    async fn finish_run(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        key: &str,
        phase: &str,
        state: RunState,
        update: &CampaignUpdate,
    ) -> Result<CampaignWrite, StoreError> {
        self.end_run(scope, campaign, key, phase, state, update)
            .await
    }

    async fn recent_sends(
        &self,
        scope: ProjectScope,
        persons: &[PersonId],
        since: DateTime<Utc>,
    ) -> Result<Vec<(PersonId, DateTime<Utc>)>, StoreError> {
        self.person_sends(scope, persons, since).await
    }

    async fn record_trigger(
        &self,
        scope: ProjectScope,
        trigger: &CampaignTrigger,
    ) -> Result<bool, StoreError> {
        self.insert_trigger(scope, trigger).await
    }

    async fn last_trigger(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        person: PersonId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.latest_trigger(scope, campaign, person).await
    }

    async fn cancel_triggers(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        person: PersonId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.cancel_pending(scope, campaign, person, until, at)
            .await
    }

    async fn due_triggers(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignTrigger>, StoreError> {
        self.pending_due(now, limit).await
    }

    async fn end_trigger(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        event_id: &str,
        state: TriggerState,
        messages: &[NewMessage],
        deliveries: &[NewDelivery],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.close_trigger(scope, campaign, event_id, state, messages, deliveries, at)
            .await
    }

    async fn move_campaign_deliveries(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.move_deliveries(scope, campaign, from, to, at).await
    }
}

fn provider_from_row(row: &AnyRow) -> Result<ProviderRecord, StoreError> {
    let provider: String = row.try_get("provider")?;
    let settings: String = row.try_get("settings")?;
    let sealed: String = row.try_get("sealed")?;
    Ok(ProviderRecord {
        provider: Provider::parse(&provider).ok_or_else(|| corrupt("provider", &provider))?,
        settings: serde_json::from_str(&settings).map_err(|_| corrupt("settings", &settings))?,
        sealed: B64
            .decode(&sealed)
            .map_err(|_| corrupt("sealed credentials", "(not shown)"))?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}
