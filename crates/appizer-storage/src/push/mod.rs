//! The push store: a project's provider credentials (sealed by the push component;
//! stored as given), and its devices, each with the distinct id it was
//! registered under; the person is that id's person at read time, so merges, splits and
//! deletions are followed without rewriting devices. One trait; one SQL implementation
//! for SQLite and PostgreSQL (`sql.rs`), run against `tests/push_conformance.rs`.

mod sql;

use appizer_core::push::{Device, DeviceFilter, NewDevice, Platform, Provider, ProviderRecord};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::DeviceId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use sql::SqlPushStore;

use crate::{ProjectScope, StoreError};

/// Reason recorded when an app unregisters a device.
pub const OPTED_OUT: &str = "opted_out";

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
}
