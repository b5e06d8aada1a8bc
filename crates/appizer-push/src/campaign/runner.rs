//! The campaign runner: starts the runs that are due and walks each running one's
//! audience into the outbox, a page at a time.
//!
//! A run is recorded once, with the campaign's move to running. Each page of its walk
//! assigns every person their group, appends a `$push_assigned` event for each (the
//! control's included), and writes the page's deliveries with the run's new cursor in
//! one transaction fenced by the cursor it read: a page is queued once across crashes,
//! restarts and a second runner, and its events (appended first, with ids made of the
//! campaign, run and person) are stored once. The walk stops at the page where the
//! campaign is no longer running (paused or cancelled) and goes on from its cursor when
//! it is resumed.
//!
//! When a delivery is due: now, or at the person's local time (their `$timezone`, else
//! the device's, else the project's) for a local-time campaign, deferred past quiet
//! hours in that zone, and spaced by the campaign's throttle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use appizer_analytics::QueryProject;
use appizer_core::event::{Event, MessageType};
use appizer_core::json::JsonObject;
use appizer_core::push::{
    Audience, CampaignRecord, CampaignRun, CampaignState, NewDelivery, NewMessage, RunPage,
    RunState,
};
use appizer_core::{CampaignId, MessageId, PersonId};
use appizer_events::append::append_events;
use appizer_storage::push::{CampaignUpdate, CampaignWrite};
use appizer_storage::queue::Partitions;
use appizer_storage::{MetadataStore, StoreError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::assign::{in_test_share, Group};
use super::definition::{MissedRun, Plan, WinnerMeasure, CONTROL};
use super::pacing::{CapVerdict, FrequencyCap, Throttle};
use super::schedule::{local_time, zone};
use super::service::{project_zone, stored_definition, AudiencePerson, AudienceWalk, Campaigns};
use super::state::{self, Action};
use super::triggers::{Armed, TriggerTap};
use super::when::Schedule;
use super::winner::decide;
use crate::message::{CAMPAIGN_ID_KEY, VARIANT_KEY};
use crate::outbox::deliver::digest_uuid;
use crate::outbox::Outbox;
use appizer_analytics::stats::Rate;

/// The event every person of a run is recorded with, in their group.
pub const ASSIGNED: &str = "$push_assigned";
/// The run a `$push_assigned` event (and a campaign delivery's message) belongs to.
pub const RUN_KEY: &str = "$push_run";
/// The key of a one-time campaign's run.
pub const ONCE: &str = "once";
/// The key of a triggered campaign's one run.
pub const TRIGGERS: &str = "triggers";
/// The phase of a run that sends to its whole audience.
pub const ALL: &str = "all";
/// Winner mode's phases: the test share first, then the rest with the winner.
pub const TEST: &str = "test";
pub const REST: &str = "rest";
/// How often the runner looks for due runs.
const TICK: Duration = Duration::from_millis(500);
/// A run later than this past its time was missed (the server was down).
const MISSED_AFTER: chrono::Duration = chrono::Duration::minutes(5);
/// How long one campaign's walk runs before the others get their turn.
const SLICE: Duration = Duration::from_millis(500);
/// How long a triggered campaign's audience condition members are used before they
/// are computed again.
const CONDITION_RECHECK: Duration = Duration::from_secs(60);
/// Campaigns read per listing page.
const LISTING: u32 = 500;

/// Each person's campaign sends inside the frequency cap's window.
type RecentSends = HashMap<PersonId, Vec<DateTime<Utc>>>;

/// An audience condition's members, sorted (`None`: the audience has no condition).
type Members = Option<Arc<Vec<PersonId>>>;

/// The runner's own view of a run in progress (rebuilt after a restart).
#[derive(Default)]
struct Walking {
    throttle: Option<Throttle>,
    /// The audience condition's members, computed once per run.
    members: Option<Members>,
    /// Every person is queued; the run ends when its deliveries have.
    walked: bool,
}

pub struct Runner {
    pub(super) store: Arc<dyn MetadataStore>,
    queue: Partitions,
    pub(super) campaigns: Arc<Campaigns>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) tap: Arc<TriggerTap>,
    walking: Mutex<HashMap<(CampaignId, String, String), Walking>>,
    /// The running triggered campaigns.
    pub(super) armed: RwLock<Arc<Vec<Armed>>>,
    /// Each triggered campaign's audience condition members, with when computed.
    members: Mutex<HashMap<CampaignId, (std::time::Instant, Members)>>,
    /// A walk stopped at the end of its slice with pages left: the next pass starts
    /// at once instead of after a tick.
    more: AtomicBool,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

/// Why a step of the runner did not finish (it is tried again at the next tick).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Campaign(#[from] super::service::CampaignError),
    #[error("cannot append assignment events: {0}")]
    Queue(String),
}

/// A run's message of one variant: the same id whenever the run is walked.
fn message_id(campaign: CampaignId, key: &str, phase: &str, variant: usize) -> MessageId {
    MessageId::from(digest_uuid(&[
        b"campaign message".as_slice(),
        campaign.as_uuid().as_bytes(),
        key.as_bytes(),
        &[0],
        phase.as_bytes(),
        &(variant as u64).to_be_bytes(),
    ]))
}

/// When a run of `plan` is due after `last` (the latest run's time, or when the
/// campaign was scheduled); `None` for a triggered campaign, which has no runs.
fn due(
    plan: &Plan,
    scheduled_at: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> Option<(String, DateTime<Utc>)> {
    match &plan.schedule {
        Schedule::Now => last.is_none().then(|| (ONCE.to_string(), scheduled_at)),
        Schedule::At(at) => last.is_none().then(|| (ONCE.to_string(), *at)),
        // The run starts when the first zone reaches that time (14 hours ahead of UTC).
        Schedule::LocalTime(date, time) => last.is_none().then(|| {
            let first = date.and_time(*time).and_utc() - chrono::Duration::hours(14);
            (ONCE.to_string(), first)
        }),
        Schedule::Recurring(cron) => {
            let at = cron.next_after(last.unwrap_or(scheduled_at))?;
            Some((at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), at))
        }
        // One run that lasts while the campaign does: each trigger is a send of it.
        Schedule::Triggered { .. } => last.is_none().then(|| (TRIGGERS.to_string(), scheduled_at)),
    }
}

/// The person's group in `run`, or `None` when the run's phase does not include them
/// (winner mode: the test share, then the rest, who get the winner or stay control).
fn group_of(
    plan: &Plan,
    campaign: CampaignId,
    run: &CampaignRun,
    person: PersonId,
) -> Option<Group> {
    let group = plan.split.assign(campaign, person);
    let share = || {
        plan.winner
            .as_ref()
            .is_some_and(|w| in_test_share(campaign, person, w.test_percent))
    };
    match run.phase.as_str() {
        TEST => share().then_some(group),
        REST => {
            if share() {
                return None;
            }
            match group {
                Group::Control => Some(Group::Control),
                Group::Variant(_) => {
                    let winner = run.decision.as_ref()?["decision"]["winner"].as_u64()?;
                    Some(Group::Variant(winner as usize))
                }
            }
        }
        _ => Some(group),
    }
}

/// The run to start at `now`, if one is due: its key, its time, and whether it was
/// missed (later than [`MISSED_AFTER`]: the server was down). Of several occurrences
/// missed, only the latest: a schedule missed runs once, never once per occurrence.
fn due_now(
    plan: &Plan,
    scheduled_at: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(String, DateTime<Utc>, bool)> {
    let (mut key, mut at) = due(plan, scheduled_at, last)?;
    if at > now {
        return None;
    }
    while let Some((k, a)) = due(plan, scheduled_at, Some(at)).filter(|(_, a)| *a <= now) {
        (key, at) = (k, a);
    }
    Some((key, at, now - at > MISSED_AFTER))
}

impl Runner {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        queue: Partitions,
        campaigns: Arc<Campaigns>,
        outbox: Arc<Outbox>,
        tap: Arc<TriggerTap>,
    ) -> Self {
        Self {
            store,
            queue,
            campaigns,
            outbox,
            tap,
            walking: Mutex::default(),
            armed: RwLock::default(),
            members: Mutex::default(),
            more: AtomicBool::new(false),
        }
    }

    /// Runs until `shutdown`: every tick, starts what is due and walks what runs;
    /// meanwhile takes the trigger events the workers hand over.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Some(mut events) = self.tap.take_receiver() {
            let (runner, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    // Events first: those handed over before a shutdown are recorded.
                    let first = tokio::select! {
                        biased;
                        e = events.recv() => match e { Some(e) => e, None => return },
                        () = shutdown.cancelled() => return,
                    };
                    let mut end = first.1;
                    let mut batch = vec![first.0];
                    while batch.len() < 1_000 {
                        match events.try_recv() {
                            Ok((e, e_end)) => {
                                batch.push(e);
                                end = e_end;
                            }
                            Err(_) => break,
                        }
                    }
                    let mut wait = Duration::from_millis(100);
                    // Kept until recorded: a store outage delays triggers (and the
                    // flush of their events), loses none.
                    while let Err(e) = runner.take_events(batch.clone()).await {
                        tracing::warn!(error = %e, "cannot record campaign triggers; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    runner.tap.recorded_through(end);
                }
            });
        }
        while !shutdown.is_cancelled() {
            if let Err(e) = self.tick(Utc::now()).await {
                tracing::warn!(error = %e, "campaign runner step failed; retrying");
            }
            if self.more.swap(false, Ordering::Relaxed) {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass: due runs started, running campaigns walked (each for a slice),
    /// triggered campaigns armed and their due sends sent.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), RunError> {
        let mut armed = Vec::new();
        for state in [CampaignState::Scheduled, CampaignState::Running] {
            let mut after = None;
            loop {
                let page = self
                    .store
                    .push()
                    .campaigns_in(state, after, LISTING)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for record in page {
                    let id = record.id;
                    match self.step(record, now).await {
                        Ok(Some(a)) => armed.push(a),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(campaign = %id, error = %e, "campaign step failed")
                        }
                    }
                }
            }
        }
        self.arm(armed);
        self.send_due_triggers(now).await
    }

    /// Arms the running triggered campaigns, as a pass does, without starting or
    /// walking anything: the server calls it before its workers start, so the events
    /// they replay after a restart find their campaigns armed (an event offered before
    /// would be passed over, and its trigger lost once it is flushed).
    pub async fn arm_triggers(&self, now: DateTime<Utc>) -> Result<(), RunError> {
        let mut armed = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .push()
                .campaigns_in(CampaignState::Running, after, LISTING)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for record in page {
                if let Some((project, cap)) = self.project(&record).await? {
                    let plan = match stored_definition(&record)?.check(project_zone(&project)) {
                        Ok(plan) => plan,
                        Err(_) => continue,
                    };
                    if matches!(plan.schedule, Schedule::Triggered { .. }) {
                        armed.push(self.armed(&project, cap, record, plan, now).await?);
                    }
                }
            }
        }
        self.arm(armed);
        Ok(())
    }

    /// A running triggered campaign as a pass holds it.
    async fn armed(
        &self,
        project: &QueryProject,
        cap: Option<FrequencyCap>,
        record: CampaignRecord,
        plan: Plan,
        now: DateTime<Utc>,
    ) -> Result<Armed, RunError> {
        let members = self.condition_members(project, &record, &plan, now).await?;
        Ok(Armed {
            cap: cap.filter(|_| !plan.ignore_frequency_cap),
            record,
            plan,
            project: project.clone(),
            members,
        })
    }

    /// The campaign's project, with its frequency cap.
    async fn project(
        &self,
        record: &CampaignRecord,
    ) -> Result<Option<(QueryProject, Option<FrequencyCap>)>, RunError> {
        let Some(scope) = self.store.project_scope(record.project_id).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_project(scope.organization(), record.project_id)
            .await?
            .map(|(scope, project)| {
                let cap = project.settings.frequency_cap.map(|c| FrequencyCap {
                    max: c.max,
                    window: chrono::Duration::seconds(c.window_seconds as i64),
                });
                (QueryProject::of(scope, &project), cap)
            }))
    }

    /// One campaign's step; a running triggered campaign comes back armed.
    async fn step(
        &self,
        record: CampaignRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<Armed>, RunError> {
        let Some((project, cap)) = self.project(&record).await? else {
            return Ok(None);
        };
        let definition = stored_definition(&record)?;
        let plan = match definition.check(project_zone(&project)) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(campaign = %record.id, error = %e, "a stored campaign no longer checks");
                return Ok(None);
            }
        };
        match record.state {
            CampaignState::Scheduled => {
                self.start_due(&project, record, &plan, now).await?;
                Ok(None)
            }
            CampaignState::Running if matches!(plan.schedule, Schedule::Triggered { .. }) => {
                Ok(Some(self.armed(&project, cap, record, plan, now).await?))
            }
            CampaignState::Running => {
                let cap = cap.filter(|_| !plan.ignore_frequency_cap);
                self.walk(&project, record, &plan, cap, now).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A triggered campaign's audience condition members, computed at most once a
    /// minute.
    async fn condition_members(
        &self,
        project: &QueryProject,
        record: &CampaignRecord,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<Members, RunError> {
        if plan.audience.condition.is_none() {
            return Ok(None);
        }
        if let Some((at, members)) = self.members.lock().get(&record.id) {
            if at.elapsed() < CONDITION_RECHECK {
                return Ok(members.clone());
            }
        }
        let walk = AudienceWalk::new(&self.campaigns, project, plan, Vec::new(), now).await?;
        let members = walk.members();
        self.members
            .lock()
            .insert(record.id, (std::time::Instant::now(), members.clone()));
        Ok(members)
    }

    /// Starts the campaign's next run if it is due (or records it skipped, if it was
    /// missed and the campaign says so).
    async fn start_due(
        &self,
        project: &QueryProject,
        record: CampaignRecord,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), RunError> {
        let scope = project.scope;
        let runs = self.store.push().runs(scope, record.id).await?;
        let last = runs.iter().map(|r| r.due_at).max();
        let Some((key, at, missed)) = due_now(plan, record.updated_at, last, now) else {
            return Ok(());
        };
        let skip = missed && plan.missed_run == MissedRun::Skip;
        let recurring = matches!(plan.schedule, Schedule::Recurring(_));
        let (state, next) = if skip {
            let next = if recurring {
                CampaignState::Scheduled
            } else {
                CampaignState::Completed
            };
            (RunState::Skipped, next)
        } else {
            (RunState::Sending, CampaignState::Running)
        };
        let run = CampaignRun {
            campaign_id: record.id,
            key,
            phase: if plan.winner.is_some() { TEST } else { ALL }.to_string(),
            project_id: record.project_id,
            state,
            due_at: at,
            cursor: None,
            assigned: 0,
            queued: 0,
            started_at: now,
            finished_at: skip.then_some(now),
            decision: None,
        };
        let update = CampaignUpdate {
            version: record.version,
            name: record.name.clone(),
            state: next,
            definition: record.definition.clone(),
            at: now,
        };
        match self.store.push().start_run(scope, &run, &update).await? {
            CampaignWrite::Done(_) if skip => {
                tracing::info!(campaign = %record.id, run = %run.key, "missed run skipped");
            }
            CampaignWrite::Done(_) => {
                tracing::info!(campaign = %record.id, run = %run.key, missed, "campaign run started");
            }
            // Changed meanwhile (paused, cancelled, edited): seen at the next tick.
            CampaignWrite::Stale(_) | CampaignWrite::Missing => {}
        }
        Ok(())
    }

    /// The update that moves `record` by `action`, if the table has the move.
    fn moved(
        &self,
        record: &CampaignRecord,
        action: Action,
        now: DateTime<Utc>,
    ) -> Option<CampaignUpdate> {
        let next = state::apply(record.state, action).ok()?;
        Some(CampaignUpdate {
            version: record.version,
            name: record.name.clone(),
            state: next,
            definition: record.definition.clone(),
            at: now,
        })
    }

    /// Walks the running campaign's sending run for a slice; ends the run (and moves
    /// the campaign on) when its audience is done.
    async fn walk(
        &self,
        project: &QueryProject,
        record: CampaignRecord,
        plan: &Plan,
        cap: Option<FrequencyCap>,
        now: DateTime<Utc>,
    ) -> Result<(), RunError> {
        let scope = project.scope;
        if matches!(plan.schedule, Schedule::Triggered { .. }) {
            return Ok(());
        }
        let runs = self.store.push().runs(scope, record.id).await?;
        let Some(run) = runs.iter().find(|r| r.state == RunState::Sending).cloned() else {
            let test = runs
                .iter()
                .find(|r| r.phase == TEST && r.state == RunState::Sent);
            if let (Some(test), false) = (test, runs.iter().any(|r| r.phase == REST)) {
                return self.decide(project, &record, test).await;
            }
            return Ok(());
        };
        let started = std::time::Instant::now();
        let key = (record.id, run.key.clone(), run.phase.clone());
        let (walked, members) = {
            let walking = self.walking.lock();
            let w = walking.get(&key);
            (
                w.is_some_and(|w| w.walked),
                w.and_then(|w| w.members.clone()),
            )
        };
        if !walked {
            let sendable = self.campaigns.sendable(project, &plan.platforms).await?;
            let mut walk = match members {
                Some(members) => {
                    AudienceWalk::with_members(&self.campaigns, project, plan, sendable, members)
                }
                None => {
                    let walk =
                        AudienceWalk::new(&self.campaigns, project, plan, sendable, now).await?;
                    self.walking.lock().entry(key.clone()).or_default().members =
                        Some(walk.members());
                    walk
                }
            };
            walk.start_after(run.cursor);
            let mut cursor = run.cursor;
            loop {
                // Paused, cancelled or edited since: stop here; the cursor keeps the place.
                let now_record = self.store.push().campaign(scope, record.id).await?;
                if now_record.as_ref().map(|r| r.state) != Some(CampaignState::Running) {
                    return Ok(());
                }
                let Some((persons, last)) = walk.next_page().await? else {
                    break;
                };
                let recent = match &cap {
                    Some(cap) => self.recent_sends(project, &persons, cap, now).await?,
                    None => HashMap::new(),
                };
                let capped = cap.as_ref().map(|c| (c, &recent));
                let page = self.page(
                    project,
                    &record,
                    plan,
                    &run,
                    (cursor, last),
                    &persons,
                    capped,
                    now,
                )?;
                self.append_assigned(project, &record, plan, &run, &persons)
                    .await?;
                if !self.store.push().queue_run_page(scope, &page).await? {
                    // Another runner moved the run on; it carries on from there.
                    return Ok(());
                }
                self.outbox.wake_all();
                cursor = Some(last);
                if started.elapsed() > SLICE {
                    self.more.store(true, Ordering::Relaxed);
                    return Ok(());
                }
            }
            self.walking.lock().entry(key.clone()).or_default().walked = true;
        }
        // The run is sent when none of its deliveries waits any more.
        for i in 0..plan.variants.len() {
            let id = message_id(record.id, &run.key, &run.phase, i);
            let counts = self.store.push().delivery_counts(scope, id).await?;
            if counts.queued + counts.held > 0 {
                return Ok(());
            }
        }
        let Some(current) = self.store.push().campaign(scope, record.id).await? else {
            return Ok(());
        };
        let recurring = matches!(plan.schedule, Schedule::Recurring(_));
        let update = if run.phase == TEST {
            // The test share is sent: the campaign runs on, waiting for its decision.
            Some(CampaignUpdate {
                version: current.version,
                name: current.name.clone(),
                state: current.state,
                definition: current.definition.clone(),
                at: Utc::now(),
            })
        } else {
            self.moved(
                &current,
                Action::Finish {
                    more_runs: recurring,
                },
                Utc::now(),
            )
        };
        let Some(update) = update else {
            return Ok(());
        };
        self.store
            .push()
            .finish_run(
                scope,
                record.id,
                &run.key,
                &run.phase,
                RunState::Sent,
                &update,
            )
            .await?;
        self.walking
            .lock()
            .remove(&(record.id, run.key.clone(), run.phase.clone()));
        tracing::info!(campaign = %record.id, run = %run.key, "campaign run sent");
        Ok(())
    }

    /// Winner mode: once the test share has had its wait, decides from the test's
    /// report and starts the rest with the winner, or, with no significant winner and
    /// the rule `stop`, ends the campaign with the decision kept on its runs.
    async fn decide(
        &self,
        project: &QueryProject,
        record: &CampaignRecord,
        test: &CampaignRun,
    ) -> Result<(), RunError> {
        let now = Utc::now();
        let definition = stored_definition(record)?;
        // The whole plan: a goal metric's event is read.
        let plan = self.campaigns.plan(project, &definition, now).await?;
        let Some(w) = plan.winner.clone() else {
            return Ok(());
        };
        let Some(finished) = test.finished_at else {
            return Ok(());
        };
        if now < finished + chrono::Duration::minutes(i64::from(w.wait_minutes)) {
            return Ok(());
        }
        let report = self
            .campaigns
            .report(project, record, &plan, Some(&test.key), now)
            .await?;
        let rates: Vec<Rate> = plan
            .variants
            .iter()
            .map(|v| {
                let g = report
                    .groups
                    .iter()
                    .find(|g| !g.control && g.group == v.name);
                match (g, w.by) {
                    (Some(g), WinnerMeasure::Opens) => g.open_rate,
                    (Some(g), WinnerMeasure::Goal) => {
                        g.conversion_rate.unwrap_or(Rate::new(0, g.assigned))
                    }
                    (None, _) => Rate::new(0, 0),
                }
            })
            .collect();
        let decision = decide(&rates, w.no_winner);
        let winner = decision.winner.map(|i| plan.variants[i].name.clone());
        let kept = json!({
            "measure": w.by,
            "variants": plan.variants.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
            "winner_name": winner,
            "decided_at": now,
            "decision": decision,
        });
        let (state, next) = match decision.winner {
            Some(_) => (RunState::Sending, CampaignState::Running),
            None => (RunState::Skipped, CampaignState::Completed),
        };
        let run = CampaignRun {
            phase: REST.to_string(),
            state,
            cursor: None,
            assigned: 0,
            queued: 0,
            started_at: now,
            finished_at: (state == RunState::Skipped).then_some(now),
            decision: Some(kept),
            ..test.clone()
        };
        let update = CampaignUpdate {
            version: record.version,
            name: record.name.clone(),
            state: next,
            definition: record.definition.clone(),
            at: now,
        };
        if let CampaignWrite::Done(_) = self
            .store
            .push()
            .start_run(project.scope, &run, &update)
            .await?
        {
            match winner {
                Some(name) => {
                    tracing::info!(campaign = %record.id, winner = %name, significant = decision.significant, "winner mode decided")
                }
                None => {
                    tracing::warn!(campaign = %record.id, "winner mode: no variant is significantly better; the campaign stops")
                }
            }
        }
        Ok(())
    }

    /// The page's messages and deliveries.
    #[allow(clippy::too_many_arguments)]
    fn page(
        &self,
        project: &QueryProject,
        record: &CampaignRecord,
        plan: &Plan,
        run: &CampaignRun,
        (after, last): (Option<PersonId>, PersonId),
        persons: &[AudiencePerson],
        cap: Option<(&FrequencyCap, &RecentSends)>,
        now: DateTime<Utc>,
    ) -> Result<RunPage, RunError> {
        let messages: Vec<NewMessage> = plan
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| NewMessage {
                id: message_id(record.id, &run.key, &run.phase, i),
                idempotency_key: None,
                content: serde_json::to_value(&v.message).expect("content serializes"),
                audience: Audience::Campaign {
                    campaign_id: record.id,
                    run: run.key.clone(),
                },
                platforms: plan.platforms.clone(),
                campaign_id: Some(record.id.to_string()),
                variant: Some(v.name.clone()),
                created_at: run.started_at,
            })
            .collect();
        let mut walking = self.walking.lock();
        let state = walking
            .entry((record.id, run.key.clone(), run.phase.clone()))
            .or_default();
        if state.throttle.is_none() {
            state.throttle = plan.per_minute.map(Throttle::new);
        }
        let mut deliveries = Vec::new();
        let mut assigned = 0;
        for person in persons {
            let Some(group) = group_of(plan, record.id, run, person.id) else {
                continue;
            };
            assigned += 1;
            let Group::Variant(i) = group else {
                continue;
            };
            // Over the project's cap: dropped (assigned all the same), or deferred.
            let mut not_before = now;
            if let Some((cap, recent)) = cap {
                let sent = recent.get(&person.id).map(Vec::as_slice).unwrap_or(&[]);
                match cap.check(sent, now, plan.over_cap) {
                    CapVerdict::Send => {}
                    CapVerdict::Drop => continue,
                    CapVerdict::Defer(t) => not_before = t,
                }
            }
            let variant = &plan.variants[i];
            let rendered = variant
                .text
                .render(&person.properties, None)
                .ok()
                .filter(|r| {
                    r.title != variant.message.notification.title
                        || r.body != variant.message.notification.body
                })
                .map(|r| json!({"title": r.title, "body": r.body}).to_string());
            for device in &person.devices {
                let zone: Tz = zone([
                    person.properties.get("$timezone").and_then(Value::as_str),
                    device.timezone.as_deref(),
                    Some(project.timezone.as_str()),
                ]);
                let mut due_at = match &plan.schedule {
                    Schedule::LocalTime(date, time) => local_time(*date, *time, zone).max(now),
                    _ => now,
                }
                .max(not_before);
                if let Some(quiet) = &plan.quiet_hours {
                    due_at = quiet.defer(due_at, zone);
                }
                if let Some(throttle) = state.throttle.as_mut() {
                    due_at = due_at.max(throttle.slot(now));
                }
                deliveries.push(NewDelivery {
                    message_id: messages[i].id,
                    device_id: device.id,
                    person_id: Some(person.id),
                    platform: device.platform,
                    due_at,
                    rendered: rendered.clone(),
                });
            }
        }
        Ok(RunPage {
            campaign_id: record.id,
            key: run.key.clone(),
            phase: run.phase.clone(),
            after,
            cursor: last,
            messages,
            deliveries,
            assigned,
            at: now,
        })
    }

    /// The persons' campaign sends inside the cap's window.
    pub(super) async fn recent_sends(
        &self,
        project: &QueryProject,
        persons: &[AudiencePerson],
        cap: &FrequencyCap,
        now: DateTime<Utc>,
    ) -> Result<RecentSends, RunError> {
        let ids: Vec<PersonId> = persons.iter().map(|p| p.id).collect();
        let since = now - cap.window;
        let mut by_person: HashMap<PersonId, Vec<DateTime<Utc>>> = HashMap::new();
        for (person, at) in self
            .store
            .push()
            .recent_sends(project.scope, &ids, since)
            .await?
        {
            by_person.entry(person).or_default().push(at);
        }
        Ok(by_person)
    }

    /// A `$push_assigned` event per person of the page, in their group, appended
    /// before the page is written (ids made of campaign, run and person: a page walked
    /// again after a crash stores them once).
    async fn append_assigned(
        &self,
        project: &QueryProject,
        record: &CampaignRecord,
        plan: &Plan,
        run: &CampaignRun,
        persons: &[AudiencePerson],
    ) -> Result<(), RunError> {
        let at = Utc::now();
        let events: Vec<Event> = persons
            .iter()
            .filter_map(|person| {
                let distinct_id = person.devices.first()?.distinct_id.clone();
                let group = match group_of(plan, record.id, run, person.id)? {
                    Group::Variant(i) => plan.variants[i].name.clone(),
                    Group::Control => CONTROL.to_string(),
                };
                let mut properties = Map::new();
                properties.insert(CAMPAIGN_ID_KEY.into(), json!(record.id.to_string()));
                properties.insert(VARIANT_KEY.into(), json!(group));
                properties.insert(RUN_KEY.into(), json!(run.key));
                Some(Event {
                    message_id: format!(
                        "campaign:{}:{}:{}:assigned",
                        record.id, run.key, person.id
                    ),
                    properties: JsonObject::from_map(&properties),
                    received_at: at,
                    ..Event::new(
                        project.scope.project(),
                        MessageType::Track,
                        ASSIGNED,
                        distinct_id,
                        at,
                    )
                })
            })
            .collect();
        self.append_events(&events).await
    }

    /// Appends events to the event queue, as any captured event.
    pub(super) async fn append_events(&self, events: &[Event]) -> Result<(), RunError> {
        if events.is_empty() {
            return Ok(());
        }
        append_events(&self.queue, events)
            .await
            .map_err(|e| RunError::Queue(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::definition::Definition;

    fn plan(when: Value, extra: Value) -> Plan {
        let mut v = json!({"when": when, "variants": [
            {"name": "A", "title": "a", "body": "a"}, {"name": "B", "title": "b", "body": "b"}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value::<Definition>(v)
            .unwrap()
            .check(chrono_tz::Europe::Berlin)
            .unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn one_time_runs_are_due_once_and_a_missed_one_is_known() {
        let at = plan(
            json!({"type": "at", "at": "2026-12-24T09:00:00Z"}),
            json!({}),
        );
        let scheduled = t("2026-12-01T00:00:00Z");
        assert_eq!(
            due_now(&at, scheduled, None, t("2026-12-24T08:59:59Z")),
            None
        );
        assert_eq!(
            due_now(&at, scheduled, None, t("2026-12-24T09:00:01Z")),
            Some((ONCE.into(), t("2026-12-24T09:00:00Z"), false))
        );
        // The server was down for an hour: still due, and missed.
        assert_eq!(
            due_now(&at, scheduled, None, t("2026-12-24T10:00:00Z")),
            Some((ONCE.into(), t("2026-12-24T09:00:00Z"), true))
        );
        // Once it ran, never again.
        let ran = Some(t("2026-12-24T09:00:00Z"));
        assert_eq!(
            due_now(&at, scheduled, ran, t("2026-12-25T00:00:00Z")),
            None
        );
        // A local time starts when the first zone (UTC+14) reaches it.
        let local = plan(
            json!({"type": "local_time", "date": "2026-12-24", "time": "09:00"}),
            json!({}),
        );
        assert_eq!(
            due_now(&local, scheduled, None, t("2026-12-23T19:00:00Z")).map(|d| d.1),
            Some(t("2026-12-23T19:00:00Z"))
        );
    }

    #[test]
    fn a_recurring_schedule_runs_each_occurrence_and_only_the_latest_missed_one() {
        // Every day at 09:00 in Berlin (08:00 UTC in winter).
        let daily = plan(json!({"type": "recurring", "cron": "0 9 * * *"}), json!({}));
        let scheduled = t("2026-12-01T12:00:00Z");
        let first = due_now(&daily, scheduled, None, t("2026-12-02T08:00:30Z")).unwrap();
        assert_eq!(
            first,
            (
                "2026-12-02T08:00:00Z".into(),
                t("2026-12-02T08:00:00Z"),
                false
            )
        );
        assert_eq!(
            due_now(&daily, scheduled, Some(first.1), t("2026-12-02T20:00:00Z")),
            None
        );
        // Down for three days: the latest occurrence runs, once, as missed.
        let (key, at, missed) =
            due_now(&daily, scheduled, Some(first.1), t("2026-12-05T10:00:00Z")).unwrap();
        assert_eq!(
            (key.as_str(), at, missed),
            ("2026-12-05T08:00:00Z", t("2026-12-05T08:00:00Z"), true)
        );
    }

    #[test]
    fn winner_mode_phases_split_the_audience_and_the_rest_gets_the_winner() {
        let p = plan(
            json!({"type": "now"}),
            json!({"control_percent": 10,
                   "winner": {"test_percent": 30, "wait_minutes": 60, "by": "opens"}}),
        );
        let campaign = CampaignId::new();
        let run = |phase: &str, decision: Option<Value>| CampaignRun {
            campaign_id: campaign,
            key: ONCE.into(),
            phase: phase.into(),
            project_id: appizer_core::ProjectId::new(),
            state: RunState::Sending,
            due_at: t("2026-12-01T00:00:00Z"),
            cursor: None,
            assigned: 0,
            queued: 0,
            started_at: t("2026-12-01T00:00:00Z"),
            finished_at: None,
            decision,
        };
        let test = run(TEST, None);
        let rest = run(REST, Some(json!({"decision": {"winner": 1}})));
        let (mut in_test, mut in_rest) = (0, 0);
        for _ in 0..5_000 {
            let person = PersonId::new();
            match (
                group_of(&p, campaign, &test, person),
                group_of(&p, campaign, &rest, person),
            ) {
                (Some(g), None) => {
                    in_test += 1;
                    assert_eq!(g, p.split.assign(campaign, person));
                }
                (None, Some(g)) => {
                    in_rest += 1;
                    // The control stays the control; every other person gets B.
                    match p.split.assign(campaign, person) {
                        Group::Control => assert_eq!(g, Group::Control),
                        Group::Variant(_) => assert_eq!(g, Group::Variant(1)),
                    }
                }
                other => panic!("each person is in exactly one phase: {other:?}"),
            }
        }
        assert!((1_300..1_700).contains(&in_test), "{in_test}");
        assert_eq!(in_test + in_rest, 5_000);
        // Without a decision the rest sends nobody a variant.
        let undecided = run(REST, None);
        let person = (0..100)
            .map(|_| PersonId::new())
            .find(|p0| {
                !in_test_share(campaign, *p0, 30)
                    && matches!(p.split.assign(campaign, *p0), Group::Variant(_))
            })
            .unwrap();
        assert_eq!(group_of(&p, campaign, &undecided, person), None);
    }
}
