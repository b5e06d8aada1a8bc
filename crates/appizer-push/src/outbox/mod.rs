//! The durable outbox: a message is checked whole, then queued with one record per
//! device of its audience in one transaction before the send API answers; the delivery
//! loop (`deliver`) sends each record with bounded concurrency per provider, retries
//! with backoff (`retry`), retires dead devices, and turns every final outcome into an
//! event (`events`).
//!
//! At-least-once: a record is completed only after the provider answered; after a
//! crash the records that were in flight are sent again (each at most once more), and
//! their delivery events are deduplicated by id.

pub(crate) mod deliver;
pub mod events;
pub mod metrics;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appizer_core::config::PushConfig;
use appizer_core::definition::DefinitionKind;
use appizer_core::push::CampaignState;
use appizer_core::push::{Audience, DeliveryCounts, MessageRecord, NewMessage, Platform, Provider};
use appizer_core::{CampaignId, MessageId, ProjectId};
use appizer_storage::queue::Partitions;
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::credentials::MasterKey;
use crate::devices::Refused;
use crate::message::{Content, SendRequest, Tags};
use crate::providers::apns::{sender::ApnsSender, ApnsConfig};
use crate::providers::fcm::{config::FcmConfig, sender::FcmSender};
use crate::providers::webpush::{sender::WebPushSender, WebPushConfig};
use crate::providers::{Attempt, Target, Unusable};
use crate::transport::{Transport, TransportConfig, TransportError};
use retry::Backoff;

/// How long an idempotency key answers its first message.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{}: {}", .0.field, .0.rule)]
    Refused(Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refused> for SendError {
    fn from(r: Refused) -> Self {
        Self::Refused(r)
    }
}

/// The campaign a message belongs to, carried in its data and delivery events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignTag {
    pub campaign_id: String,
    pub variant: Option<String>,
}

/// A project's loaded sender for one provider.
enum Sender {
    Apns(ApnsSender),
    Fcm(FcmSender),
    Webpush(WebPushSender),
}

impl Sender {
    async fn send(&self, content: &Content, tags: &Tags, target: Target<'_>) -> Attempt {
        match self {
            Sender::Apns(s) => s.send(content, tags, target).await,
            Sender::Fcm(s) => s.send(content, tags, target).await,
            Sender::Webpush(s) => s.send(content, tags, target).await,
        }
    }
}

/// A cached sender, with when its record was read and what it said.
struct CachedSender {
    read_at: Instant,
    updated_at: Option<DateTime<Utc>>,
    sender: Result<Arc<Sender>, Unusable>,
}

/// A message's content and tags, parsed once.
type Loaded = Arc<(Content, Tags)>;

/// How long a cached sender is used before its record is read again (a credentials
/// change reaches deliveries within this time).
const SENDER_RECHECK: Duration = Duration::from_secs(10);
/// How long a campaign's state is trusted before it is read again: a pause holds its
/// deliveries within this time.
const CAMPAIGN_RECHECK: Duration = Duration::from_millis(250);
/// Messages whose content is kept parsed at most.
const CONTENT_CACHE: usize = 4096;

pub struct Outbox {
    store: Arc<dyn MetadataStore>,
    queue: Partitions,
    master: Arc<MasterKey>,
    transport: Arc<Transport>,
    config: PushConfig,
    apns: ApnsConfig,
    fcm: FcmConfig,
    webpush: WebPushConfig,
    backoff: Backoff,
    /// One per platform lane of the delivery loop (`Platform::ALL` order).
    wake: [Notify; 3],
    senders: Mutex<HashMap<(ProjectId, Provider), CachedSender>>,
    scopes: Mutex<HashMap<ProjectId, (Instant, Option<ProjectScope>)>>,
    contents: Mutex<HashMap<MessageId, Loaded>>,
    /// Whether each campaign's deliveries may go, read again after [`CAMPAIGN_RECHECK`].
    gates: Mutex<HashMap<String, (Instant, deliver::Gate)>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        queue: Partitions,
        master: Arc<MasterKey>,
        config: &PushConfig,
    ) -> Result<Self, TransportError> {
        let transport = Arc::new(Transport::new(TransportConfig::from_config(config))?);
        Ok(Self {
            store,
            queue,
            master,
            transport,
            config: config.clone(),
            apns: ApnsConfig::from_config(config),
            fcm: FcmConfig::from_config(config),
            webpush: WebPushConfig::from_config(config),
            backoff: Backoff {
                min: Duration::from_millis(config.retry_min_ms),
                max: Duration::from_millis(config.retry_max_ms),
            },
            wake: [Notify::new(), Notify::new(), Notify::new()],
            senders: Mutex::default(),
            scopes: Mutex::default(),
            contents: Mutex::default(),
            gates: Mutex::default(),
        })
    }

    /// Wakes every delivery lane (a campaign run queued deliveries).
    pub fn wake_all(&self) {
        for wake in &self.wake {
            wake.notify_one();
        }
    }

    /// The registration rules' view of the Web Push settings.
    pub fn webpush_config(&self) -> &WebPushConfig {
        &self.webpush
    }

    /// Checks `request` and queues it for the project: one outbox record per active
    /// device of the audience on the platforms the project has a provider for.
    /// Returns the message and whether it is new (`false`: the idempotency key's first
    /// message, nothing queued again).
    pub async fn send(
        &self,
        scope: ProjectScope,
        request: SendRequest,
        campaign: Option<CampaignTag>,
        now: DateTime<Utc>,
    ) -> Result<(MessageRecord, bool), SendError> {
        let checked = request.check(
            campaign
                .as_ref()
                .map(|c| (c.campaign_id.as_str(), c.variant.as_deref())),
        )?;
        if let Audience::Segment(id) = &checked.audience {
            let found = self
                .store
                .get_definition(scope, DefinitionKind::Segment, *id)
                .await?;
            if found.is_none() {
                return Err(Refused {
                    field: "to.segment_id".into(),
                    rule: "must be a segment of this project".into(),
                }
                .into());
            }
        }
        let configured: Vec<Provider> = self
            .store
            .push()
            .providers(scope)
            .await?
            .into_iter()
            .map(|r| r.provider)
            .collect();
        let platforms: Vec<Platform> = checked
            .platforms
            .iter()
            .copied()
            .filter(|p| configured.contains(&p.provider()))
            .collect();
        if platforms.is_empty() {
            let asked: Vec<&str> = checked.platforms.iter().map(|p| p.as_str()).collect();
            return Err(Refused {
                field: "platforms".into(),
                rule: format!(
                    "the project has no push provider for {} (PUT .../push/providers/{{provider}})",
                    asked.join(", ")
                ),
            }
            .into());
        }
        let message = NewMessage {
            id: MessageId::new(),
            idempotency_key: checked.idempotency_key,
            content: serde_json::to_value(&checked.content).expect("content serializes"),
            audience: checked.audience,
            platforms,
            campaign_id: campaign.as_ref().map(|c| c.campaign_id.clone()),
            variant: campaign.and_then(|c| c.variant),
            created_at: now,
        };
        let since =
            now - chrono::Duration::from_std(IDEMPOTENCY_WINDOW).expect("a day fits a duration");
        let (record, new) = self
            .store
            .push()
            .queue_message(scope, &message, since)
            .await?;
        if new {
            ::metrics::counter!(metrics::MESSAGES_TOTAL).increment(1);
            if record.devices > 0 {
                for platform in &record.platforms {
                    self.wake[deliver::platform_index(*platform)].notify_one();
                }
            }
        }
        Ok((record, new))
    }

    /// A message of the project with how its deliveries stand.
    pub async fn message(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<Option<(MessageRecord, DeliveryCounts)>, StoreError> {
        let push = self.store.push();
        let Some(record) = push.message(scope, id).await? else {
            return Ok(None);
        };
        let counts = push.delivery_counts(scope, id).await?;
        Ok(Some((record, counts)))
    }

    /// The scope of a delivery's project (read again after [`SENDER_RECHECK`]); `None`
    /// once the project is gone.
    async fn scope(&self, project: ProjectId) -> Result<Option<ProjectScope>, StoreError> {
        if let Some((read_at, scope)) = self.scopes.lock().get(&project) {
            if read_at.elapsed() < SENDER_RECHECK {
                return Ok(*scope);
            }
        }
        let scope = self.store.project_scope(project).await?;
        self.scopes.lock().insert(project, (Instant::now(), scope));
        Ok(scope)
    }

    /// Whether the campaign's deliveries may go now: not while it is paused, never once
    /// it is cancelled or deleted.
    async fn campaign_gate(
        &self,
        scope: ProjectScope,
        campaign: &str,
    ) -> Result<deliver::Gate, StoreError> {
        if let Some((read_at, gate)) = self.gates.lock().get(campaign) {
            if read_at.elapsed() < CAMPAIGN_RECHECK {
                return Ok(*gate);
            }
        }
        let record = match campaign.parse::<CampaignId>() {
            Ok(id) => self.store.push().campaign(scope, id).await?,
            Err(_) => None,
        };
        let gate = match record.map(|r| r.state) {
            Some(CampaignState::Paused) => deliver::Gate::Hold,
            Some(CampaignState::Cancelled) | None => deliver::Gate::Cancel,
            Some(_) => deliver::Gate::Send,
        };
        let mut gates = self.gates.lock();
        if gates.len() >= CONTENT_CACHE {
            gates.clear();
        }
        gates.insert(campaign.to_string(), (Instant::now(), gate));
        Ok(gate)
    }

    /// The content and tags of a message, parsed once.
    async fn content(
        &self,
        scope: ProjectScope,
        id: MessageId,
    ) -> Result<Option<Loaded>, StoreError> {
        if let Some(loaded) = self.contents.lock().get(&id) {
            return Ok(Some(loaded.clone()));
        }
        let Some(record) = self.store.push().message(scope, id).await? else {
            return Ok(None);
        };
        let content: Content = match serde_json::from_value(record.content) {
            Ok(c) => c,
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "message {id} has unreadable content: {e}"
                )))
            }
        };
        let loaded = Arc::new((
            content,
            Tags {
                message_id: id,
                campaign_id: record.campaign_id,
                variant: record.variant,
            },
        ));
        let mut contents = self.contents.lock();
        if contents.len() >= CONTENT_CACHE {
            contents.clear();
        }
        contents.insert(id, loaded.clone());
        Ok(Some(loaded))
    }

    /// The project's sender for `provider`: cached, its record read again after
    /// [`SENDER_RECHECK`] (a sender whose record did not change is kept, with its
    /// tokens). `None` when the project has no such provider.
    async fn sender(
        &self,
        scope: ProjectScope,
        provider: Provider,
    ) -> Result<Option<Result<Arc<Sender>, Unusable>>, StoreError> {
        let key = (scope.project(), provider);
        let known = {
            let senders = self.senders.lock();
            match senders.get(&key) {
                Some(c) if c.read_at.elapsed() < SENDER_RECHECK => {
                    return Ok(c.updated_at.map(|_| c.sender.clone()));
                }
                Some(c) => Some((c.updated_at, c.sender.clone())),
                None => None,
            }
        };
        let record = self.store.push().provider(scope, provider).await?;
        let updated_at = record.as_ref().map(|r| r.updated_at);
        let sender = match (&record, known) {
            (_, Some((at, sender))) if at == updated_at => sender,
            (None, _) => Err(Unusable {
                provider: provider.as_str(),
                reason: "not configured".into(),
            }),
            (Some(record), _) => self.load(scope, record).map(Arc::new),
        };
        self.senders.lock().insert(
            key,
            CachedSender {
                read_at: Instant::now(),
                updated_at,
                sender: sender.clone(),
            },
        );
        Ok(updated_at.map(|_| sender))
    }

    fn load(
        &self,
        scope: ProjectScope,
        record: &appizer_core::push::ProviderRecord,
    ) -> Result<Sender, Unusable> {
        let secret = self
            .master
            .open(scope.project(), record.provider, &record.sealed)
            .map_err(|e| Unusable {
                provider: record.provider.as_str(),
                reason: e.to_string(),
            })?;
        let transport = self.transport.clone();
        Ok(match record.provider {
            Provider::Apns => {
                Sender::Apns(ApnsSender::load(record, &secret, &self.apns, transport)?)
            }
            Provider::Fcm => Sender::Fcm(FcmSender::load(record, &secret, &self.fcm, transport)?),
            Provider::Webpush => Sender::Webpush(WebPushSender::load(
                record,
                &secret,
                &self.webpush,
                transport,
            )?),
        })
    }
}
