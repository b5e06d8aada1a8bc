//! The push vocabulary: devices, their platforms and states; messages and their
//! deliveries; campaigns as stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CampaignId, DefinitionId, DeviceId, MessageId, PersonId, ProjectId};

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

impl Platform {
    /// The provider that reaches this platform's devices.
    pub fn provider(self) -> Provider {
        match self {
            Platform::Ios => Provider::Apns,
            Platform::Android => Provider::Fcm,
            Platform::Web => Provider::Webpush,
        }
    }
}

/// Who a message goes to: every active device of the persons named (by id, by any of
/// their distinct ids, or as the stored members of a segment), or the devices named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Persons(Vec<PersonId>),
    DistinctIds(Vec<String>),
    Devices(Vec<DeviceId>),
    Segment(DefinitionId),
    /// A campaign run's variant: its deliveries are queued page by page as the run
    /// walks the campaign's audience, never all at once.
    Campaign {
        campaign_id: CampaignId,
        run: String,
    },
}

/// A message to queue: its content (the push component's JSON), its audience and the
/// platforms it may reach, in one transaction with one outbox record per device.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub idempotency_key: Option<String>,
    pub content: serde_json::Value,
    pub audience: Audience,
    pub platforms: Vec<Platform>,
    pub campaign_id: Option<String>,
    pub variant: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub project_id: ProjectId,
    pub idempotency_key: Option<String>,
    pub content: serde_json::Value,
    pub audience: Audience,
    pub platforms: Vec<Platform>,
    pub campaign_id: Option<String>,
    pub variant: Option<String>,
    /// Outbox records written for it: one per device.
    pub devices: u64,
    pub created_at: DateTime<Utc>,
}

/// Where one delivery (message x device) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Queued,
    /// The provider accepted it.
    Sent,
    /// Undeliverable as it is, or out of attempts.
    Failed,
    /// The device is gone (the provider said so, or it was retired meanwhile).
    Retired,
    /// Its campaign is paused: taken again when it resumes.
    Held,
    /// Its campaign was cancelled before it was sent.
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Queued,
        DeliveryState::Sent,
        DeliveryState::Failed,
        DeliveryState::Retired,
        DeliveryState::Held,
        DeliveryState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Retired => "retired",
            DeliveryState::Held => "held",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A delivery taken by the delivery loop, with what sending needs of its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: MessageId,
    pub device_id: DeviceId,
    pub project_id: ProjectId,
    pub platform: Platform,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The device now; `None` if it was deleted meanwhile.
    pub device: Option<DeliveryDevice>,
    /// This delivery's own title and body (a campaign's, rendered for its person), as
    /// JSON `{"title", "body"}`; `None`: the message's.
    pub rendered: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDevice {
    pub address: String,
    pub web_keys: Option<WebKeys>,
    pub distinct_id: String,
    pub state: DeviceState,
}

/// What became of one delivery's attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    /// For good, with the reason.
    Failed(String),
    /// The device is dead: the delivery and the device are retired.
    Retired(String),
    /// Try again at `due` (the reason is kept as the last error).
    Retry {
        due: DateTime<Utc>,
        reason: String,
    },
    /// Its campaign is paused: held until it resumes.
    Held,
    /// Its campaign was cancelled: never sent.
    Cancelled,
}

/// How a message's deliveries stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryCounts {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub retired: u64,
    /// Held while their campaign is paused.
    pub held: u64,
    /// Not sent: their campaign was cancelled.
    pub cancelled: u64,
    /// Failures by reason.
    pub failed_by_reason: std::collections::BTreeMap<String, u64>,
    /// Retirements by reason.
    pub retired_by_reason: std::collections::BTreeMap<String, u64>,
    /// The same counts per platform (`ios`, `android`, `web`).
    pub by_platform: std::collections::BTreeMap<String, PlatformCounts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlatformCounts {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub retired: u64,
    pub held: u64,
    pub cancelled: u64,
}

/// Where a campaign stands (the moves between states are the push component's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignState {
    pub const ALL: [CampaignState; 6] = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<CampaignState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing will ever be sent again.
    pub fn is_final(&self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

/// A stored campaign: its name, state and definition (audience, variants, schedule,
/// pacing, goal: the push component's JSON, checked there before it is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub project_id: ProjectId,
    pub name: String,
    pub state: CampaignState,
    pub definition: serde_json::Value,
    /// Counts the changes: an update names the version it read, so two editors never
    /// overwrite each other unseen.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which campaigns to list: by state, in id order after `after`, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignFilter {
    pub state: Option<CampaignState>,
    pub after: Option<CampaignId>,
    pub limit: u32,
}

/// Where a campaign run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Walking its audience into the outbox.
    Sending,
    /// Every person of its audience is queued (or held out).
    Sent,
    /// Missed while the server was down, and skipped by the campaign's rule.
    Skipped,
}

impl RunState {
    pub const ALL: [RunState; 3] = [RunState::Sending, RunState::Sent, RunState::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Sending => "sending",
            RunState::Sent => "sent",
            RunState::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One run of a campaign: a one-time campaign has one (`once`), a recurring one one per
/// occurrence (its time), a triggered one none (each trigger is its own send); winner
/// mode runs a `test` phase, then the `rest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRun {
    pub campaign_id: CampaignId,
    pub key: String,
    pub phase: String,
    pub project_id: ProjectId,
    pub state: RunState,
    /// When it was due (its schedule's time).
    pub due_at: DateTime<Utc>,
    /// The last person of its audience done; the walk goes on after it.
    pub cursor: Option<PersonId>,
    /// Persons assigned a group (the control's included).
    pub assigned: u64,
    /// Deliveries queued.
    pub queued: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Winner mode's decision, on the run it started (the push component's JSON).
    pub decision: Option<serde_json::Value>,
}

/// A delivery a campaign run queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub message_id: MessageId,
    pub device_id: DeviceId,
    /// The person it goes to, counted against the project's frequency cap.
    pub person_id: Option<PersonId>,
    pub platform: Platform,
    pub due_at: DateTime<Utc>,
    /// Its own title and body (see [`Delivery::rendered`]).
    pub rendered: Option<String>,
}

/// One page of a run's walk: its messages (one per variant, written once), its
/// deliveries, and the cursor it moves from and to.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub campaign_id: CampaignId,
    pub key: String,
    pub phase: String,
    /// The cursor the page was read after: the write is refused if the run moved on.
    pub after: Option<PersonId>,
    pub cursor: PersonId,
    pub messages: Vec<NewMessage>,
    pub deliveries: Vec<NewDelivery>,
    pub assigned: u64,
    pub at: DateTime<Utc>,
}

/// Where a triggered send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    /// Waiting for its delay to end.
    Pending,
    /// Queued in the outbox.
    Sent,
    /// The campaign's cancel event came first.
    Cancelled,
    /// Not sent: the campaign ended, or the person had no device or was held out.
    Skipped,
}

impl TriggerState {
    pub const ALL: [TriggerState; 4] = [
        TriggerState::Pending,
        TriggerState::Sent,
        TriggerState::Cancelled,
        TriggerState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Pending => "pending",
            TriggerState::Sent => "sent",
            TriggerState::Cancelled => "cancelled",
            TriggerState::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One trigger of a triggered campaign: the event that entered a person, and when its
/// send is due.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignTrigger {
    pub campaign_id: CampaignId,
    /// The trigger event's message id: a trigger is recorded once per event.
    pub event_id: String,
    pub project_id: ProjectId,
    pub person_id: PersonId,
    pub distinct_id: String,
    /// The trigger event's properties, for the templates.
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub state: TriggerState,
    pub triggered_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}
