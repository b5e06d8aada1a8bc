//! The push store: a project's provider credentials (sealed by the push component;
//! stored as given), its devices, each with the distinct id it was
//! registered under (the person is that id's person at read time, so merges, splits and
//! deletions are followed without rewriting devices), and its messages with their
//! outbox: one record per (message, device), written in the message's transaction.
//! One trait; one SQL implementation for SQLite and PostgreSQL (`sql/`), run against
//! `tests/push_conformance.rs`.
//!
//! The delivery loop's methods (`take_deliveries`, `complete_deliveries`,
//! `release_deliveries`) span projects, as the ingestion workers' do; every delivery
//! they return names its project, and what is read for it goes through that project's
//! scope.

mod sql;

use appizer_core::push::{
    CampaignFilter, CampaignRecord, CampaignRun, CampaignState, CampaignTrigger, Delivery,
    DeliveryCounts, DeliveryOutcome, DeliveryState, Device, DeviceFilter, MessageRecord,
    NewDelivery, NewDevice, NewMessage, Platform, Provider, ProviderRecord, RunPage, RunState,
    TriggerState,
};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{CampaignId, DefinitionId, DeviceId, MessageId, PersonId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use sql::SqlPushStore;

use crate::{ProjectScope, StoreError};

/// Reason recorded when an app unregisters a device.
pub const OPTED_OUT: &str = "opted_out";

/// Ids one message may name in its audience at most (persons, distinct ids or devices).
pub const MAX_AUDIENCE_IDS: usize = 10_000;

/// Why a delivery is retired when its device was deleted before it was sent.
pub const DEVICE_DELETED: &str = "device_deleted";

/// A campaign's new name, state and definition, written only if it is still at
/// `version` (the one the caller read).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignUpdate {
    pub version: u64,
    pub name: String,
    pub state: CampaignState,
    pub definition: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Which devices a campaign reaches: the active devices on `platforms` of persons in
/// any of `include` (every person when empty) and in none of `exclude`, persons after
/// `after`, in person then device order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReachQuery {
    pub platforms: Vec<Platform>,
    pub include: Vec<DefinitionId>,
    pub exclude: Vec<DefinitionId>,
    pub after: Option<PersonId>,
    /// Only this person (a triggered send).
    pub person: Option<PersonId>,
    /// Devices in one page at most (a page holds whole persons, unless one person has
    /// more devices than this).
    pub limit: u32,
}

/// A device a campaign reaches, with its person's properties now.
#[derive(Debug, Clone, PartialEq)]
pub struct Reachable {
    pub person_id: PersonId,
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub device: Device,
}

/// What a campaign write did.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignWrite {
    /// Written: the record as it now is (`None` once deleted).
    Done(Option<CampaignRecord>),
    /// No such campaign in the project.
    Missing,
    /// Changed since it was read: the record as it now is, nothing written.
    Stale(CampaignRecord),
}

#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// Registers a device, or updates the one with the same platform and address (its
    /// distinct id, keys, app, locale and time zone; a retired one becomes active
    /// again). Returns the device and whether it is new.
    async fn register(
        &self,
        scope: ProjectScope,
        device: &NewDevice,
    ) -> Result<(Device, bool), StoreError>;

    /// Registers many devices at once (an import from another provider, tests and
    /// benchmarks): those whose platform and address the project already has are left
    /// as they are. Returns how many were added.
    async fn import_devices(
        &self,
        scope: ProjectScope,
        devices: &[NewDevice],
    ) -> Result<u64, StoreError>;

    /// Retires the device at `address` of `platform` (an app's opt-out); `None` if the
    /// project has none there.
    async fn unregister(
        &self,
        scope: ProjectScope,
        platform: Platform,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError>;

    async fn get(&self, scope: ProjectScope, id: DeviceId) -> Result<Option<Device>, StoreError>;

    /// Devices in id order, after `filter.after`, at most `filter.limit`.
    async fn list(
        &self,
        scope: ProjectScope,
        filter: &DeviceFilter,
    ) -> Result<Vec<Device>, StoreError>;

    /// Deletes a device with its audit entry, in one transaction; `false` if not there.
    async fn delete(
        &self,
        scope: ProjectScope,
        id: DeviceId,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;

    /// Saves a project's credentials for a provider (replacing earlier ones) with the
    /// audit entry, in one transaction.
    async fn put_provider(
        &self,
        scope: ProjectScope,
        record: &ProviderRecord,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;

    /// The project's credentials for `provider`.
    async fn provider(
        &self,
        scope: ProjectScope,
        provider: Provider,
    ) -> Result<Option<ProviderRecord>, StoreError>;

    /// Every provider the project has configured, by name.
    async fn providers(&self, scope: ProjectScope) -> Result<Vec<ProviderRecord>, StoreError>;

    /// Queues `message`: its record and one outbox record (queued, due now) per active
    /// device of its audience on its platforms, in one transaction; returns the record
    /// and `true`. If the project queued a message with the same idempotency key at or
    /// after `keys_since`, nothing is written and that message is returned with
    /// `false`; an older use of the key is forgotten.
    async fn queue_message(
        &self,
        scope: ProjectScope,
        message: &NewMessage,
        keys_since: DateTime<Utc>,
    ) -> Result<(MessageRecord, bool), StoreError>;

    async fn message(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<Option<MessageRecord>, StoreError>;

    /// How the message's deliveries stand, per state, reason and platform.
    async fn delivery_counts(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<DeliveryCounts, StoreError>;

    /// Takes up to `limit` queued deliveries due at `now` that no loop holds, oldest due
    /// first, of `platform` (or every platform: for tests; one platform's take reads
    /// only its due records), and holds them until `lease_until` (counting the attempt).
    async fn take_deliveries(
        &self,
        platform: Option<Platform>,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records what became of deliveries taken, in one transaction; a retired one
    /// retires its device too (never sent to again).
    async fn complete_deliveries(
        &self,
        done: &[(MessageId, DeviceId, DeliveryOutcome)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Releases every held delivery (a delivery loop starting after a stop or a crash:
    /// what its predecessor held is due again). Returns how many.
    async fn release_deliveries(&self) -> Result<u64, StoreError>;

    /// Deliveries queued in every project (due now or later), for the depth metric.
    async fn queued_deliveries(&self) -> Result<u64, StoreError>;

    /// Stores a new campaign with its audit entry, in one transaction.
    async fn create_campaign(
        &self,
        scope: ProjectScope,
        campaign: &CampaignRecord,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;

    async fn campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
    ) -> Result<Option<CampaignRecord>, StoreError>;

    /// Campaigns in id order, after `filter.after`, at most `filter.limit`.
    async fn campaigns(
        &self,
        scope: ProjectScope,
        filter: &CampaignFilter,
    ) -> Result<Vec<CampaignRecord>, StoreError>;

    /// Writes `update` with its audit entry if the campaign is still at
    /// `update.version`; the version moves on by one.
    async fn update_campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
        update: &CampaignUpdate,
        audit: &NewAuditEntry,
    ) -> Result<CampaignWrite, StoreError>;

    /// Deletes the campaign with its audit entry if it is still at `version`.
    async fn delete_campaign(
        &self,
        scope: ProjectScope,
        id: CampaignId,
        version: u64,
        audit: &NewAuditEntry,
    ) -> Result<CampaignWrite, StoreError>;

    /// Campaigns of every project in `state`, in id order after `after`, at most
    /// `limit` (the campaign runner's view).
    async fn campaigns_in(
        &self,
        state: CampaignState,
        after: Option<CampaignId>,
        limit: u32,
    ) -> Result<Vec<CampaignRecord>, StoreError>;

    /// Records `run` (unless a run with its campaign, key and phase is there already)
    /// and writes `update` (the campaign's move), in one transaction, if the campaign is
    /// still at `update.version`.
    async fn start_run(
        &self,
        scope: ProjectScope,
        run: &CampaignRun,
        update: &CampaignUpdate,
    ) -> Result<CampaignWrite, StoreError>;

    /// A campaign's runs, by due time.
    async fn runs(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
    ) -> Result<Vec<CampaignRun>, StoreError>;

    /// Writes one page of a run in one transaction: its messages and deliveries not
    /// there yet (a delivery is one per message and device), each message's device
    /// count, and the run's cursor and counts; only if the run is still sending from
    /// `page.after`. `false`: it was not, and nothing was written.
    async fn queue_run_page(&self, scope: ProjectScope, page: &RunPage)
        -> Result<bool, StoreError>;

    /// Ends a run in `state` and writes `update` (the campaign's move), in one
    /// transaction, if the campaign is still at `update.version`.
    async fn finish_run(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        key: &str,
        phase: &str,
        state: RunState,
        update: &CampaignUpdate,
    ) -> Result<CampaignWrite, StoreError>;

    /// Moves the campaign's deliveries in one of `from` (and not held by a delivery
    /// loop) to `to`: pausing holds them, resuming queues them again, cancelling ends
    /// them. Returns how many.
    async fn move_campaign_deliveries(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        from: &[DeliveryState],
        to: DeliveryState,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// When the persons were sent campaign messages after `since` (each person once
    /// per message), for the frequency cap.
    async fn recent_sends(
        &self,
        scope: ProjectScope,
        persons: &[PersonId],
        since: DateTime<Utc>,
    ) -> Result<Vec<(PersonId, DateTime<Utc>)>, StoreError>;

    /// Records a trigger unless one of its campaign and event is there; whether it
    /// was recorded.
    async fn record_trigger(
        &self,
        scope: ProjectScope,
        trigger: &CampaignTrigger,
    ) -> Result<bool, StoreError>;

    /// When the person last entered the campaign (for its re-entry rule).
    async fn last_trigger(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        person: PersonId,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Cancels the person's pending triggers of the campaign triggered at or before
    /// `until` (the cancel event's time). Returns how many.
    async fn cancel_triggers(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        person: PersonId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Pending triggers of every project due at `now`, oldest due first.
    async fn due_triggers(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignTrigger>, StoreError>;

    /// Ends a pending trigger in `state` and writes its messages and deliveries, in
    /// one transaction; `false` (nothing written) if it was not pending any more.
    #[allow(clippy::too_many_arguments)]
    async fn end_trigger(
        &self,
        scope: ProjectScope,
        campaign: CampaignId,
        event_id: &str,
        state: TriggerState,
        messages: &[NewMessage],
        deliveries: &[NewDelivery],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// One page of the devices `query` reaches; the next page starts after the last
    /// person of this one. Empty at the end.
    async fn reachable(
        &self,
        scope: ProjectScope,
        query: &ReachQuery,
    ) -> Result<Vec<Reachable>, StoreError>;
}
