//! Campaigns as the API uses them: created and changed as checked definitions, moved by
//! actions through the one state table, previewed against the project's data, and
//! test-sent to chosen devices. Every write is audited in its transaction and names the
//! version it read, so two editors never overwrite each other unseen.
//!
//! What may change when: a draft, anything; a scheduled, running or paused campaign,
//! its name and pacing only (what was sent stays what the report describes); a
//! completed or cancelled one, its name. Deleting needs a draft, completed or cancelled
//! campaign (cancel first).

use std::sync::Arc;

use appizer_analytics::saved::SegmentCondition;
use appizer_analytics::{AnalyticsError, Engine, QueryProject};
use appizer_core::definition::DefinitionKind;
use appizer_core::push::{
    CampaignFilter, CampaignRecord, CampaignState, DeliveryState, Device, Platform, Provider,
    RunState,
};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{CampaignId, DeviceId, PersonId};
use appizer_storage::push::{CampaignUpdate, CampaignWrite, ReachQuery};
use appizer_storage::{MetadataStore, StoreError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::assign::Group;
use super::definition::{Definition, Pacing, Plan, PlannedGoal, PlannedVariant, CONTROL};
use super::state::{self, Action};
use super::when::Schedule;
use crate::devices::Refused;
use crate::message::{Notification, SendRequest, To};
use crate::outbox::{CampaignTag, Outbox, SendError};

/// Devices read per page while walking an audience.
const PAGE: u32 = 2_000;
/// Persons a preview renders each variant for, at most.
pub const MAX_PREVIEW_SAMPLE: usize = 20;
/// Devices one test send goes to, at most.
pub const MAX_TEST_DEVICES: usize = 20;

/// Why a campaign request was not done.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{}: {}", .0.field, .0.rule)]
    Refused(Refused),
    #[error("no such campaign")]
    Missing,
    /// The campaign's state or version does not allow it (409).
    #[error("{message}")]
    Conflict {
        message: String,
        /// The campaign as it is.
        current: Box<CampaignRecord>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Analytics(AnalyticsError),
}

impl From<Refused> for CampaignError {
    fn from(r: Refused) -> Self {
        Self::Refused(r)
    }
}

impl From<AnalyticsError> for CampaignError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Invalid { field, rule } => Self::Refused(Refused { field, rule }),
            other => Self::Analytics(other),
        }
    }
}

/// Builds a write's audit entry: action (`campaign.create`), campaign, details.
pub type Audit<'a> = &'a (dyn Fn(&str, CampaignId, Value) -> NewAuditEntry + Send + Sync);

/// The API's actions on a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Schedule,
    Pause,
    Resume,
    Cancel,
}

impl Act {
    pub fn name(self) -> &'static str {
        match self {
            Act::Schedule => "schedule",
            Act::Pause => "pause",
            Act::Resume => "resume",
            Act::Cancel => "cancel",
        }
    }
}

/// A change to a campaign: each part optional; `version` the one read (none: the
/// current one, read now).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub version: Option<u64>,
    pub name: Option<String>,
    pub definition: Option<Definition>,
}

/// Reachable devices per platform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlatformCounts {
    pub ios: u64,
    pub android: u64,
    pub web: u64,
}

impl PlatformCounts {
    fn add(&mut self, platform: Platform) {
        match platform {
            Platform::Ios => self.ios += 1,
            Platform::Android => self.android += 1,
            Platform::Web => self.web += 1,
        }
    }
}

/// How many persons fall in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GroupCount {
    /// A variant's name, or `control`.
    pub group: String,
    pub persons: u64,
}

/// A variant rendered for one person of the audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rendering {
    #[schema(value_type = String)]
    pub person_id: PersonId,
    /// The person's own group.
    pub group: String,
    pub variant: String,
    pub title: String,
    pub body: String,
    /// The translation chosen; absent for the default text.
    pub locale: Option<String>,
}

/// What a campaign would reach and say, before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Preview {
    /// Persons with at least one reachable device.
    pub persons: u64,
    pub devices: u64,
    pub platforms: PlatformCounts,
    /// The platforms it goes to: those asked for that the project has a provider for.
    pub sendable_platforms: Vec<Platform>,
    /// Persons per variant and in the control, by the campaign's split.
    pub groups: Vec<GroupCount>,
    /// Each variant rendered for the first persons of the audience.
    pub sample: Vec<Rendering>,
}

/// What a preview is asked for.
#[derive(Debug, Clone, Default)]
pub struct PreviewRequest {
    /// Persons to render each variant for (at most [`MAX_PREVIEW_SAMPLE`]).
    pub sample: usize,
    /// The trigger event's properties templates read (triggered campaigns).
    pub event: Option<Map<String, Value>>,
    /// The campaign the split is of (a saved campaign's preview); a new one otherwise.
    pub campaign: Option<CampaignId>,
}

/// One test send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TestSent {
    pub variant: String,
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    pub message_id: String,
    pub title: String,
    pub body: String,
}

pub struct Campaigns {
    store: Arc<dyn MetadataStore>,
    engine: Arc<Engine>,
    outbox: Arc<Outbox>,
}

impl std::fmt::Debug for Campaigns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaigns").finish_non_exhaustive()
    }
}

fn refused(field: impl Into<String>, rule: impl Into<String>) -> CampaignError {
    CampaignError::Refused(Refused {
        field: field.into(),
        rule: rule.into(),
    })
}

/// The project's zone (UTC if the stored name no longer parses).
pub fn project_zone(project: &QueryProject) -> Tz {
    project.timezone.parse().unwrap_or(Tz::UTC)
}

/// A stored definition, read back.
pub fn stored_definition(record: &CampaignRecord) -> Result<Definition, StoreError> {
    serde_json::from_value(record.definition.clone()).map_err(|e| {
        StoreError::Corrupt(format!(
            "campaign {} has an unreadable definition: {e}",
            record.id
        ))
    })
}

fn stored_text(definition: &Definition) -> Value {
    serde_json::to_value(definition).expect("a definition serializes")
}

/// `definition` with another's pacing: equal to the other when only pacing differs.
fn without_pacing(definition: &Definition) -> Definition {
    Definition {
        pacing: Pacing::default(),
        ..definition.clone()
    }
}

fn group_name(plan: &Plan, group: Group) -> String {
    match group {
        Group::Variant(i) => plan.variants[i].name.clone(),
        Group::Control => CONTROL.to_string(),
    }
}

impl Campaigns {
    pub fn new(store: Arc<dyn MetadataStore>, engine: Arc<Engine>, outbox: Arc<Outbox>) -> Self {
        Self {
            store,
            engine,
            outbox,
        }
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A campaign's runs, by due time.
    pub async fn runs(
        &self,
        project: &QueryProject,
        id: CampaignId,
    ) -> Result<Vec<appizer_core::push::CampaignRun>, CampaignError> {
        Ok(self.store.push().runs(project.scope, id).await?)
    }

    /// Checks `definition` whole against the project: the pure checks, then that its
    /// segments and goal metric exist and its audience condition evaluates.
    pub async fn plan(
        &self,
        project: &QueryProject,
        definition: &Definition,
        now: DateTime<Utc>,
    ) -> Result<Plan, CampaignError> {
        let mut plan = definition.check(project_zone(project))?;
        let scope = project.scope;
        for (list, field) in [
            (&plan.audience.segments, "audience.segments"),
            (&plan.audience.exclude_segments, "audience.exclude_segments"),
        ] {
            for (i, id) in list.iter().enumerate() {
                let found = self
                    .store
                    .get_definition(scope, DefinitionKind::Segment, *id)
                    .await?;
                if found.is_none() {
                    return Err(refused(
                        format!("{field}[{i}]"),
                        "must be a segment of this project",
                    ));
                }
            }
        }
        if let Some(condition) = &plan.audience.condition {
            self.condition_members(project, condition, now).await?;
        }
        if let Some(metric) = plan.goal_metric {
            let window_hours = definition
                .goal
                .as_ref()
                .and_then(|g| g.window_hours)
                .unwrap_or(super::definition::DEFAULT_GOAL_WINDOW_HOURS);
            let (_, m) = self
                .engine
                .metric(project, &metric.to_string())
                .await
                .map_err(|e| match e {
                    AnalyticsError::Invalid { rule, .. } => refused("goal.metric_id", rule),
                    other => CampaignError::Analytics(other),
                })?;
            let series = match (m.series.as_slice(), &m.formula) {
                ([one], None) if one.event.is_some() => one,
                _ => {
                    return Err(refused(
                        "goal.metric_id",
                        "a goal metric has one series of one event, without a formula",
                    ))
                }
            };
            let mut properties = series.properties.clone();
            properties.extend(m.properties.iter().cloned());
            plan.goal = Some(PlannedGoal {
                event: series.event.clone().unwrap_or_default(),
                properties,
                window_hours,
            });
        }
        Ok(plan)
    }

    /// The persons `condition` holds for, in id order; its faults named under
    /// `audience.condition`.
    async fn condition_members(
        &self,
        project: &QueryProject,
        condition: &SegmentCondition,
        now: DateTime<Utc>,
    ) -> Result<Vec<PersonId>, CampaignError> {
        self.engine
            .segment_members(project, condition, now)
            .await
            .map_err(|e| match e {
                AnalyticsError::Invalid { field, rule } => {
                    let rest = field.strip_prefix("condition").unwrap_or(&field);
                    refused(format!("audience.condition{rest}"), rule)
                }
                other => CampaignError::Analytics(other),
            })
    }

    pub async fn create(
        &self,
        project: &QueryProject,
        name: String,
        definition: Definition,
        audit: Audit<'_>,
        now: DateTime<Utc>,
    ) -> Result<CampaignRecord, CampaignError> {
        self.plan(project, &definition, now).await?;
        let record = CampaignRecord {
            id: CampaignId::new(),
            project_id: project.scope.project(),
            name,
            state: CampaignState::Draft,
            definition: stored_text(&definition),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let entry = audit("campaign.create", record.id, json!({"name": record.name}));
        self.store
            .push()
            .create_campaign(project.scope, &record, &entry)
            .await?;
        Ok(record)
    }

    pub async fn get(
        &self,
        project: &QueryProject,
        id: CampaignId,
    ) -> Result<CampaignRecord, CampaignError> {
        self.store
            .push()
            .campaign(project.scope, id)
            .await?
            .ok_or(CampaignError::Missing)
    }

    pub async fn list(
        &self,
        project: &QueryProject,
        filter: &CampaignFilter,
    ) -> Result<Vec<CampaignRecord>, CampaignError> {
        Ok(self.store.push().campaigns(project.scope, filter).await?)
    }

    /// The record at `version` (the current one when `None`), or a conflict.
    async fn at_version(
        &self,
        project: &QueryProject,
        id: CampaignId,
        version: Option<u64>,
    ) -> Result<CampaignRecord, CampaignError> {
        let record = self.get(project, id).await?;
        match version {
            Some(v) if v != record.version => Err(stale(record)),
            _ => Ok(record),
        }
    }

    async fn write(
        &self,
        project: &QueryProject,
        record: CampaignRecord,
        update: CampaignUpdate,
        entry: NewAuditEntry,
    ) -> Result<CampaignRecord, CampaignError> {
        match self
            .store
            .push()
            .update_campaign(project.scope, record.id, &update, &entry)
            .await?
        {
            CampaignWrite::Done(Some(now)) => Ok(now),
            CampaignWrite::Done(None) | CampaignWrite::Missing => Err(CampaignError::Missing),
            CampaignWrite::Stale(now) => Err(stale(now)),
        }
    }

    pub async fn update(
        &self,
        project: &QueryProject,
        id: CampaignId,
        change: Change,
        audit: Audit<'_>,
        now: DateTime<Utc>,
    ) -> Result<CampaignRecord, CampaignError> {
        let record = self.at_version(project, id, change.version).await?;
        let current = stored_definition(&record)?;
        let definition = match change.definition {
            None => current.clone(),
            Some(new) => {
                let changed_beyond_pacing = without_pacing(&new) != without_pacing(&current);
                let frozen = !state::freely_editable(record.state);
                if frozen && (changed_beyond_pacing || record.state.is_final()) {
                    let may = if record.state.is_final() {
                        "its name"
                    } else {
                        "its name and pacing"
                    };
                    return Err(CampaignError::Conflict {
                        message: format!(
                            "only a draft campaign's definition may change; a {} one takes changes to {may}",
                            record.state.as_str()
                        ),
                        current: Box::new(record),
                    });
                }
                self.plan(project, &new, now).await?;
                new
            }
        };
        let name = change.name.unwrap_or_else(|| record.name.clone());
        let entry = audit(
            "campaign.update",
            id,
            json!({"name": name, "definition_changed": definition != current}),
        );
        let update = CampaignUpdate {
            version: record.version,
            name,
            state: record.state,
            definition: stored_text(&definition),
            at: now,
        };
        self.write(project, record, update, entry).await
    }

    /// Moves the campaign by `act`; 409 when its state has no such move.
    pub async fn act(
        &self,
        project: &QueryProject,
        id: CampaignId,
        act: Act,
        version: Option<u64>,
        audit: Audit<'_>,
        now: DateTime<Utc>,
    ) -> Result<CampaignRecord, CampaignError> {
        let record = self.at_version(project, id, version).await?;
        let action = match act {
            Act::Schedule => Action::Schedule,
            Act::Pause => Action::Pause,
            Act::Resume => Action::Resume {
                run_started: self.run_started(project, &record).await?,
            },
            Act::Cancel => Action::Cancel,
        };
        let next = match state::apply(record.state, action) {
            Ok(next) => next,
            Err(e) => {
                return Err(CampaignError::Conflict {
                    message: e.to_string(),
                    current: Box::new(record),
                })
            }
        };
        if act == Act::Schedule {
            let definition = stored_definition(&record)?;
            let plan = self.plan(project, &definition, now).await?;
            self.ready_to_send(project, &plan, now).await?;
        }
        let entry = audit(
            &format!("campaign.{}", act.name()),
            id,
            json!({"from": record.state.as_str(), "to": next.as_str()}),
        );
        let update = CampaignUpdate {
            version: record.version,
            name: record.name.clone(),
            state: next,
            definition: record.definition.clone(),
            at: now,
        };
        let written = self.write(project, record, update, entry).await?;
        // The deliveries already queued follow (the delivery loop checks the state of
        // those it holds, so none goes out after a pause or a cancel either way).
        let moves: &[(&[DeliveryState], DeliveryState)] = match act {
            Act::Pause => &[(&[DeliveryState::Queued], DeliveryState::Held)],
            Act::Resume => &[(&[DeliveryState::Held], DeliveryState::Queued)],
            Act::Cancel => &[(
                &[DeliveryState::Queued, DeliveryState::Held],
                DeliveryState::Cancelled,
            )],
            Act::Schedule => &[],
        };
        for (from, to) in moves {
            self.store
                .push()
                .move_campaign_deliveries(project.scope, id, from, *to, now)
                .await?;
        }
        if act == Act::Resume {
            self.outbox.wake_all();
        }
        Ok(written)
    }

    /// Whether a run of the campaign began (resuming goes back to running, not to
    /// waiting for the schedule).
    async fn run_started(
        &self,
        project: &QueryProject,
        record: &CampaignRecord,
    ) -> Result<bool, CampaignError> {
        let runs = self.store.push().runs(project.scope, record.id).await?;
        Ok(runs.iter().any(|r| r.state == RunState::Sending))
    }

    /// What scheduling needs beyond a valid definition: a provider for one of its
    /// platforms, and a time still ahead.
    async fn ready_to_send(
        &self,
        project: &QueryProject,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), CampaignError> {
        let sendable = self.sendable(project, &plan.platforms).await?;
        if sendable.is_empty() {
            let asked: Vec<&str> = plan.platforms.iter().map(|p| p.as_str()).collect();
            return Err(refused(
                "audience.platforms",
                format!(
                    "the project has no push provider for {} (PUT .../push/providers/{{provider}})",
                    asked.join(", ")
                ),
            ));
        }
        match &plan.schedule {
            Schedule::At(at) if *at <= now => Err(refused(
                "when.at",
                "is in the past (send now with {\"type\": \"now\"})",
            )),
            Schedule::LocalTime(date, time) => {
                // The last zone to reach that wall-clock time is 12 hours behind UTC.
                let last = date.and_time(*time).and_utc() + chrono::Duration::hours(12);
                if last <= now {
                    return Err(refused(
                        "when.date",
                        "that local time has passed in every time zone",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The platforms of `asked` the project has a provider for.
    pub async fn sendable(
        &self,
        project: &QueryProject,
        asked: &[Platform],
    ) -> Result<Vec<Platform>, CampaignError> {
        let configured: Vec<Provider> = self
            .store
            .push()
            .providers(project.scope)
            .await?
            .into_iter()
            .map(|r| r.provider)
            .collect();
        Ok(asked
            .iter()
            .copied()
            .filter(|p| configured.contains(&p.provider()))
            .collect())
    }

    /// Deletes a draft, completed or cancelled campaign.
    pub async fn delete(
        &self,
        project: &QueryProject,
        id: CampaignId,
        version: Option<u64>,
        audit: Audit<'_>,
    ) -> Result<(), CampaignError> {
        let record = self.at_version(project, id, version).await?;
        if !(record.state == CampaignState::Draft || record.state.is_final()) {
            return Err(CampaignError::Conflict {
                message: format!(
                    "a {} campaign cannot be deleted; cancel it first",
                    record.state.as_str()
                ),
                current: Box::new(record),
            });
        }
        let entry = audit("campaign.delete", id, json!({"name": record.name}));
        match self
            .store
            .push()
            .delete_campaign(project.scope, id, record.version, &entry)
            .await?
        {
            CampaignWrite::Done(_) => Ok(()),
            CampaignWrite::Missing => Err(CampaignError::Missing),
            CampaignWrite::Stale(now) => Err(stale(now)),
        }
    }

    /// Walks the audience of `definition` now: persons and devices per platform, the
    /// split's groups, and each variant rendered for the first persons.
    pub async fn preview(
        &self,
        project: &QueryProject,
        definition: &Definition,
        request: &PreviewRequest,
        now: DateTime<Utc>,
    ) -> Result<Preview, CampaignError> {
        let plan = self.plan(project, definition, now).await?;
        // A new campaign has no id yet: a fresh one (an id's default) splits it.
        let campaign = request.campaign.unwrap_or_default();
        let sendable = self.sendable(project, &plan.platforms).await?;
        let mut preview = Preview {
            persons: 0,
            devices: 0,
            platforms: PlatformCounts::default(),
            sendable_platforms: sendable.clone(),
            groups: plan
                .variants
                .iter()
                .map(|v| v.name.clone())
                .chain((plan.split.weights().1 > 0).then(|| CONTROL.to_string()))
                .map(|group| GroupCount { group, persons: 0 })
                .collect(),
            sample: Vec::new(),
        };
        let sample = request.sample.min(MAX_PREVIEW_SAMPLE);
        let mut walk = AudienceWalk::new(self, project, &plan, sendable, now).await?;
        while let Some((page, _)) = walk.next_page().await? {
            for person in page {
                preview.persons += 1;
                for device in &person.devices {
                    preview.devices += 1;
                    preview.platforms.add(device.platform);
                }
                let group = plan.split.assign(campaign, person.id);
                let index = match group {
                    Group::Variant(i) => i,
                    Group::Control => plan.variants.len(),
                };
                preview.groups[index].persons += 1;
                if (preview.persons as usize) <= sample {
                    for v in &plan.variants {
                        let r = v
                            .text
                            .render(&person.properties, request.event.as_ref())
                            .map_err(|e| refused("variants", e.to_string()))?;
                        preview.sample.push(Rendering {
                            person_id: person.id,
                            group: group_name(&plan, group),
                            variant: v.name.clone(),
                            title: r.title,
                            body: r.body,
                            locale: r.locale,
                        });
                    }
                }
            }
        }
        Ok(preview)
    }

    /// Sends `variant` (default: the first) of the campaign to `devices` now, each
    /// rendered for its device's person; not part of the campaign's figures (the
    /// messages carry no campaign id).
    pub async fn test_send(
        &self,
        project: &QueryProject,
        id: CampaignId,
        devices: &[DeviceId],
        variant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TestSent>, CampaignError> {
        if devices.is_empty() || devices.len() > MAX_TEST_DEVICES {
            return Err(refused(
                "device_ids",
                format!("must list 1 to {MAX_TEST_DEVICES} devices"),
            ));
        }
        let record = self.get(project, id).await?;
        let definition = stored_definition(&record)?;
        let plan = self.plan(project, &definition, now).await?;
        let chosen: &PlannedVariant = match variant {
            None => &plan.variants[0],
            Some(name) => plan
                .variants
                .iter()
                .find(|v| v.name == name)
                .ok_or_else(|| refused("variant", "must name one of the campaign's variants"))?,
        };
        let push = self.store.push();
        let mut sent = Vec::with_capacity(devices.len());
        for (i, device_id) in devices.iter().enumerate() {
            let field = format!("device_ids[{i}]");
            let device = push
                .get(project.scope, *device_id)
                .await?
                .ok_or_else(|| refused(&field, "must be a device of this project"))?;
            let properties = match device.person_id {
                Some(p) => self
                    .store
                    .persons()
                    .get(project.scope, p)
                    .await?
                    .map(|p| p.properties.values().clone())
                    .unwrap_or_default(),
                None => Map::new(),
            };
            let r = chosen
                .text
                .render(&properties, None)
                .map_err(|e| refused("variant", e.to_string()))?;
            let m = &chosen.message;
            let request = SendRequest {
                to: To {
                    device_ids: Some(vec![*device_id]),
                    ..To::default()
                },
                platforms: Some(vec![device.platform]),
                notification: Notification {
                    title: r.title.clone(),
                    body: r.body.clone(),
                    ..m.notification.clone()
                },
                apns: m.apns.clone(),
                android: m.android.clone(),
                web: m.web.clone(),
                ttl_seconds: Some(m.ttl_seconds),
                collapse_key: m.collapse_key.clone(),
                idempotency_key: None,
            };
            let tag: Option<CampaignTag> = None;
            let (message, _) = self
                .outbox
                .send(project.scope, request, tag, now)
                .await
                .map_err(|e| match e {
                    SendError::Refused(r) => refused(&field, r.rule),
                    SendError::Store(e) => CampaignError::Store(e),
                })?;
            sent.push(TestSent {
                variant: chosen.name.clone(),
                device_id: *device_id,
                message_id: message.id.to_string(),
                title: r.title,
                body: r.body,
            });
        }
        Ok(sent)
    }
}

fn stale(now: CampaignRecord) -> CampaignError {
    CampaignError::Conflict {
        message: format!(
            "the campaign changed since it was read (now at version {})",
            now.version
        ),
        current: Box::new(now),
    }
}

/// A person of an audience with their reachable devices.
#[derive(Debug, Clone)]
pub struct AudiencePerson {
    pub id: PersonId,
    pub properties: Map<String, Value>,
    pub devices: Vec<Device>,
}

/// The audience of a plan, page by page in person order: the store's reachable devices
/// narrowed by the audience condition's members.
pub(crate) struct AudienceWalk<'a> {
    campaigns: &'a Campaigns,
    project: QueryProject,
    query: ReachQuery,
    /// The condition's members, sorted; `None` without a condition.
    members: Option<Arc<Vec<PersonId>>>,
    done: bool,
}

impl<'a> AudienceWalk<'a> {
    pub(crate) async fn new(
        campaigns: &'a Campaigns,
        project: &QueryProject,
        plan: &Plan,
        platforms: Vec<Platform>,
        now: DateTime<Utc>,
    ) -> Result<AudienceWalk<'a>, CampaignError> {
        let members = match &plan.audience.condition {
            Some(c) => Some(Arc::new(
                campaigns.condition_members(project, c, now).await?,
            )),
            None => None,
        };
        Ok(Self::with_members(
            campaigns, project, plan, platforms, members,
        ))
    }

    /// A walk with the condition's members computed before (a run's, kept between
    /// its pages).
    pub(crate) fn with_members(
        campaigns: &'a Campaigns,
        project: &QueryProject,
        plan: &Plan,
        platforms: Vec<Platform>,
        members: Option<Arc<Vec<PersonId>>>,
    ) -> AudienceWalk<'a> {
        AudienceWalk {
            campaigns,
            project: project.clone(),
            query: ReachQuery {
                platforms,
                include: plan.audience.segments.clone(),
                exclude: plan.audience.exclude_segments.clone(),
                after: None,
                person: None,
                limit: PAGE,
            },
            members,
            done: false,
        }
    }

    /// The condition's members this walk follows.
    pub(crate) fn members(&self) -> Option<Arc<Vec<PersonId>>> {
        self.members.clone()
    }

    /// Walks on from after `cursor` (a run's place).
    pub(crate) fn start_after(&mut self, cursor: Option<PersonId>) {
        self.query.after = cursor;
    }

    /// The next page's persons (those the condition holds for) and the last person the
    /// page read, the walk's place after it; `None` at the end.
    pub(crate) async fn next_page(
        &mut self,
    ) -> Result<Option<(Vec<AudiencePerson>, PersonId)>, CampaignError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .campaigns
            .store
            .push()
            .reachable(self.project.scope, &self.query)
            .await?;
        let Some(last) = page.last().map(|r| r.person_id) else {
            self.done = true;
            return Ok(None);
        };
        self.query.after = Some(last);
        let mut persons: Vec<AudiencePerson> = Vec::new();
        for r in page {
            if let Some(members) = &self.members {
                if members.binary_search(&r.person_id).is_err() {
                    continue;
                }
            }
            match persons.last_mut() {
                Some(p) if p.id == r.person_id => p.devices.push(r.device),
                _ => persons.push(AudiencePerson {
                    id: r.person_id,
                    properties: r.properties,
                    devices: vec![r.device],
                }),
            }
        }
        Ok(Some((persons, last)))
    }
}
