//! The device store: push devices of a project, each with the distinct id it was
//! registered under; the person is that id's person at read time, so merges, splits and
//! deletions are followed without rewriting devices. One trait; one SQL implementation
//! for SQLite and PostgreSQL (`sql.rs`), run against `tests/device_conformance.rs`.

mod sql;

use appizer_core::push::{Device, DeviceFilter, NewDevice, Platform};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::DeviceId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use sql::SqlDeviceStore;

use crate::{ProjectScope, StoreError};

/// Reason recorded when an app unregisters a device.
pub const OPTED_OUT: &str = "opted_out";

#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
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
}
