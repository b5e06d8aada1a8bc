//! The push vocabulary: devices, their platforms and states.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DeviceId, PersonId, ProjectId};

/// Where a device receives pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// An Apple device, through APNs (a hex device token).
    Ios,
    /// An Android device, through FCM (a registration token).
    Android,
    /// A browser, through its vendor's Web Push service (a subscription).
    Web,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Ios, Platform::Android, Platform::Web];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Web => "web",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Whether pushes go to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Pushes go to it.
    Active,
    /// Never sent to again: the app opted out, or the provider said the token is dead.
    Retired,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Active => "active",
            DeviceState::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [DeviceState::Active, DeviceState::Retired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A Web Push subscription's keys (base64url, as browsers send them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebKeys {
    pub p256dh: String,
    pub auth: String,
}

/// A device to register: checked by the push component before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub platform: Platform,
    /// The APNs or FCM token, or the Web Push endpoint.
    pub address: String,
    pub web_keys: Option<WebKeys>,
    pub distinct_id: String,
    pub app_id: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub at: DateTime<Utc>,
}

/// A stored device, with the person its distinct id belongs to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub project_id: ProjectId,
    pub platform: Platform,
    pub address: String,
    pub web_keys: Option<WebKeys>,
    pub distinct_id: String,
    /// `None` when the distinct id has no person (yet, or any more: deleted).
    pub person_id: Option<PersonId>,
    pub app_id: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub state: DeviceState,
    /// Why it was retired: `opted_out`, or the provider's reason.
    pub retired_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which devices a listing returns, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub person: Option<PersonId>,
    pub platform: Option<Platform>,
    pub state: Option<DeviceState>,
    pub after: Option<DeviceId>,
    pub limit: u32,
}

/// A push provider a project can configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Apns,
    Fcm,
    Webpush,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Apns, Provider::Fcm, Provider::Webpush];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
            Provider::Webpush => "webpush",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// A project's credentials for one provider: the settings that may be shown, and the
/// secret part sealed (encrypted and authenticated) under the server's master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecord {
    pub provider: Provider,
    /// What may be shown (ids, topic, environment, a public key): never a secret.
    pub settings: serde_json::Value,
    /// The nonce and ciphertext of the secret part.
    pub sealed: Vec<u8>,
    pub updated_at: DateTime<Utc>,
}
