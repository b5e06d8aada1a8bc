//! Triggered campaigns: the workers offer every processed event to the [`TriggerTap`];
//! the events of a running triggered campaign's trigger or cancel event reach the
//! runner, which records a pending send per trigger (once per event: a replay offers
//! it again), cancels the person's pending sends on the cancel event, and sends each
//! pending one when its delay has passed, with the trigger event's properties in its
//! templates. A pending send is durable: a restart between the trigger and the end of
//! the delay sends it once when it comes due. The workers' flush waits until the
//! runner has recorded what it was handed from the events it writes
//! ([`EventTap::settled`]): a restart replays only unflushed events, so a trigger
//! recorded after its event's flush would be lost to a kill in between.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use appizer_analytics::QueryProject;
use appizer_core::event::{Event, MessageType};
use appizer_core::json::JsonObject;
use appizer_core::push::{
    Audience, CampaignRecord, CampaignState, CampaignTrigger, NewDelivery, NewMessage, TriggerState,
};
use appizer_core::{CampaignId, MessageId, ProjectId};
use appizer_events::pipeline::EventTap;
use appizer_storage::push::ReachQuery;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Notify};

use super::assign::Group;
use super::definition::{Plan, CONTROL};
use super::pacing::{CapVerdict, FrequencyCap};
use super::runner::{RunError, Runner, ASSIGNED, RUN_KEY, TRIGGERS};
use super::schedule::zone;
use super::when::{Reentry, Schedule};
use crate::message::{CAMPAIGN_ID_KEY, VARIANT_KEY};
use crate::outbox::deliver::digest_uuid;

/// Due triggers sent per pass at most.
const DUE_PER_PASS: u32 = 1_000;

/// Where the workers hand the runner the events it watches for.
#[derive(Debug)]
pub struct TriggerTap {
    /// Event names watched, per project (trigger and cancel events of running
    /// triggered campaigns), as the runner last set them.
    watched: RwLock<HashMap<ProjectId, HashSet<String>>>,
    /// Each event with the end (one past the queue offset) of the records it came with.
    sender: mpsc::UnboundedSender<(Event, u64)>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(Event, u64)>>>,
    /// The end of the last records an event was handed over from.
    sent_end: AtomicU64,
    /// The end of the last records whose handed-over events the runner recorded.
    recorded_end: AtomicU64,
    recorded: Notify,
}

impl Default for TriggerTap {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            watched: RwLock::default(),
            sender,
            receiver: Mutex::new(Some(receiver)),
            sent_end: AtomicU64::new(0),
            recorded_end: AtomicU64::new(0),
            recorded: Notify::new(),
        }
    }
}

impl TriggerTap {
    /// Watches these names from now on.
    pub fn watch(&self, names: HashMap<ProjectId, HashSet<String>>) {
        *self.watched.write() = names;
    }

    /// The receiving end, for the one runner.
    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<(Event, u64)>> {
        self.receiver.lock().take()
    }

    /// The runner has recorded every event handed over from records below `end`.
    pub fn recorded_through(&self, end: u64) {
        self.recorded_end.fetch_max(end, Ordering::AcqRel);
        self.recorded.notify_waiters();
    }

    /// Whether what was handed over from records below `end` is recorded: events come
    /// and are recorded in queue order, so it is once the recorded end reaches `end`
    /// or the end of the last records anything was handed over from. (A flush may so
    /// wait for the recording of an event just above its own; it never waits for long.)
    fn is_settled(&self, end: u64) -> bool {
        let wanted = end.min(self.sent_end.load(Ordering::Acquire));
        self.recorded_end.load(Ordering::Acquire) >= wanted
    }
}

impl EventTap for TriggerTap {
    fn offer(&self, events: &[Event], end: u64) {
        let watched = self.watched.read();
        if watched.is_empty() {
            return;
        }
        let mut sent = false;
        for e in events {
            if watched
                .get(&e.project_id)
                .is_some_and(|names| names.contains(&e.event))
            {
                sent |= self.sender.send((e.clone(), end)).is_ok();
            }
        }
        if sent {
            self.sent_end.fetch_max(end, Ordering::AcqRel);
        }
    }

    fn settled(
        &self,
        end: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let recorded = self.recorded.notified();
                if self.is_settled(end) {
                    return;
                }
                recorded.await;
            }
        })
    }
}

/// A running triggered campaign, as the runner holds it between passes.
#[derive(Debug, Clone)]
pub(super) struct Armed {
    pub record: CampaignRecord,
    pub plan: Plan,
    pub project: QueryProject,
    /// The audience condition's members (sorted), as last computed.
    pub members: Option<Arc<Vec<appizer_core::PersonId>>>,
    /// The project's frequency cap, unless the campaign ignores it.
    pub cap: Option<FrequencyCap>,
}

/// A triggered send's message of one variant.
fn trigger_message_id(campaign: CampaignId, event_id: &str, variant: usize) -> MessageId {
    MessageId::from(digest_uuid(&[
        b"trigger message".as_slice(),
        campaign.as_uuid().as_bytes(),
        event_id.as_bytes(),
        &(variant as u64).to_be_bytes(),
    ]))
}

impl Runner {
    /// Records and cancels triggers for the events the workers handed over.
    pub(super) async fn take_events(&self, events: Vec<Event>) -> Result<(), RunError> {
        let armed = self.armed.read().clone();
        let now = Utc::now();
        for event in events {
            let Some(person) = event.person_id else {
                continue;
            };
            for a in armed
                .iter()
                .filter(|a| a.record.project_id == event.project_id)
            {
                let Schedule::Triggered {
                    event: name,
                    conditions,
                    delay_seconds,
                    cancel_if,
                    reentry,
                } = &a.plan.schedule
                else {
                    continue;
                };
                let scope = a.project.scope;
                if cancel_if.as_deref() == Some(event.event.as_str()) {
                    self.store
                        .push()
                        .cancel_triggers(scope, a.record.id, person, now, now)
                        .await?;
                    continue;
                }
                if *name != event.event {
                    continue;
                }
                let properties = event.properties.to_map();
                if !conditions
                    .iter()
                    .all(|(key, c)| c.matches(properties.get(key)))
                {
                    continue;
                }
                if !self.in_segments(a, person).await? {
                    continue;
                }
                if a.members
                    .as_ref()
                    .is_some_and(|m| m.binary_search(&person).is_err())
                {
                    continue;
                }
                let last = self
                    .store
                    .push()
                    .last_trigger(scope, a.record.id, person)
                    .await?;
                let enters = match (reentry, last) {
                    (_, None) | (Reentry::Always, _) => true,
                    (Reentry::Once, Some(_)) => false,
                    (Reentry::OncePer { seconds }, Some(last)) => {
                        now - last >= chrono::Duration::seconds(*seconds as i64)
                    }
                };
                if !enters {
                    continue;
                }
                let trigger = CampaignTrigger {
                    campaign_id: a.record.id,
                    event_id: event.message_id.clone(),
                    project_id: event.project_id,
                    person_id: person,
                    distinct_id: event.distinct_id.clone(),
                    properties,
                    state: TriggerState::Pending,
                    triggered_at: now,
                    due_at: now + chrono::Duration::seconds(*delay_seconds as i64),
                };
                self.store.push().record_trigger(scope, &trigger).await?;
            }
        }
        Ok(())
    }

    /// The audience's segments (any included, none excluded) hold the person.
    async fn in_segments(
        &self,
        a: &Armed,
        person: appizer_core::PersonId,
    ) -> Result<bool, RunError> {
        let scope = a.project.scope;
        let audience = &a.plan.audience;
        for s in &audience.exclude_segments {
            if self.store.is_segment_member(scope, *s, person).await? {
                return Ok(false);
            }
        }
        if audience.segments.is_empty() {
            return Ok(true);
        }
        for s in &audience.segments {
            if self.store.is_segment_member(scope, *s, person).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends the triggers whose delay has passed (those of a paused campaign wait; those
    /// of one no longer running are skipped).
    pub(super) async fn send_due_triggers(&self, now: DateTime<Utc>) -> Result<(), RunError> {
        let due = self.store.push().due_triggers(now, DUE_PER_PASS).await?;
        if due.is_empty() {
            return Ok(());
        }
        let armed = self.armed.read().clone();
        for trigger in due {
            let a = armed.iter().find(|a| a.record.id == trigger.campaign_id);
            match a {
                Some(a) => self.send_trigger(a, &trigger, now).await?,
                None => {
                    let Some(scope) = self.store.project_scope(trigger.project_id).await? else {
                        continue;
                    };
                    let state = self
                        .store
                        .push()
                        .campaign(scope, trigger.campaign_id)
                        .await?
                        .map(|r| r.state);
                    if matches!(state, Some(CampaignState::Paused | CampaignState::Running)) {
                        // Paused: it waits; running but not armed yet: the next pass.
                        continue;
                    }
                    self.store
                        .push()
                        .end_trigger(
                            scope,
                            trigger.campaign_id,
                            &trigger.event_id,
                            TriggerState::Skipped,
                            &[],
                            &[],
                            now,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn send_trigger(
        &self,
        a: &Armed,
        trigger: &CampaignTrigger,
        now: DateTime<Utc>,
    ) -> Result<(), RunError> {
        let scope = a.project.scope;
        let plan = &a.plan;
        let group = plan.split.assign(a.record.id, trigger.person_id);
        let group_name = match group {
            Group::Variant(i) => plan.variants[i].name.clone(),
            Group::Control => CONTROL.to_string(),
        };
        // The person's group, as for a run: every entry is a query over events.
        let mut properties = Map::new();
        properties.insert(CAMPAIGN_ID_KEY.into(), json!(a.record.id.to_string()));
        properties.insert(VARIANT_KEY.into(), json!(group_name));
        properties.insert(RUN_KEY.into(), json!(TRIGGERS));
        let assigned = Event {
            message_id: format!(
                "campaign:{}:trigger:{}:assigned",
                a.record.id, trigger.event_id
            ),
            properties: JsonObject::from_map(&properties),
            received_at: now,
            ..Event::new(
                trigger.project_id,
                MessageType::Track,
                ASSIGNED,
                trigger.distinct_id.clone(),
                now,
            )
        };
        self.append_events(&[assigned]).await?;
        let Group::Variant(i) = group else {
            self.store
                .push()
                .end_trigger(
                    scope,
                    a.record.id,
                    &trigger.event_id,
                    TriggerState::Sent,
                    &[],
                    &[],
                    now,
                )
                .await?;
            return Ok(());
        };
        let variant = &plan.variants[i];
        let sendable = self.campaigns.sendable(&a.project, &plan.platforms).await?;
        let reach = self
            .store
            .push()
            .reachable(
                scope,
                &ReachQuery {
                    platforms: sendable,
                    person: Some(trigger.person_id),
                    limit: 1_000,
                    ..ReachQuery::default()
                },
            )
            .await?;
        let message = NewMessage {
            id: trigger_message_id(a.record.id, &trigger.event_id, i),
            idempotency_key: None,
            content: serde_json::to_value(&variant.message).expect("content serializes"),
            audience: Audience::Campaign {
                campaign_id: a.record.id,
                run: TRIGGERS.to_string(),
            },
            platforms: plan.platforms.clone(),
            campaign_id: Some(a.record.id.to_string()),
            variant: Some(variant.name.clone()),
            created_at: now,
        };
        let person_properties = reach
            .first()
            .map(|r| r.properties.clone())
            .unwrap_or_default();
        let mut not_before = now;
        if let Some(cap) = &a.cap {
            let sent: Vec<DateTime<Utc>> = self
                .store
                .push()
                .recent_sends(scope, &[trigger.person_id], now - cap.window)
                .await?
                .into_iter()
                .map(|(_, at)| at)
                .collect();
            match cap.check(&sent, now, plan.over_cap) {
                CapVerdict::Send => {}
                CapVerdict::Drop => {
                    let push = self.store.push();
                    let skipped = TriggerState::Skipped;
                    push.end_trigger(
                        scope,
                        a.record.id,
                        &trigger.event_id,
                        skipped,
                        &[],
                        &[],
                        now,
                    )
                    .await?;
                    return Ok(());
                }
                CapVerdict::Defer(t) => not_before = t,
            }
        }
        let rendered = variant
            .text
            .render(&person_properties, Some(&trigger.properties))
            .ok()
            .filter(|r| {
                r.title != variant.message.notification.title
                    || r.body != variant.message.notification.body
            })
            .map(|r| json!({"title": r.title, "body": r.body}).to_string());
        let deliveries: Vec<NewDelivery> = reach
            .iter()
            .map(|r| {
                let zone: Tz = zone([
                    r.properties.get("$timezone").and_then(Value::as_str),
                    r.device.timezone.as_deref(),
                    Some(a.project.timezone.as_str()),
                ]);
                let due_at = match &plan.quiet_hours {
                    Some(q) => q.defer(not_before, zone),
                    None => not_before,
                };
                NewDelivery {
                    message_id: message.id,
                    device_id: r.device.id,
                    person_id: Some(trigger.person_id),
                    platform: r.device.platform,
                    due_at,
                    rendered: rendered.clone(),
                }
            })
            .collect();
        let state = if deliveries.is_empty() {
            TriggerState::Skipped
        } else {
            TriggerState::Sent
        };
        let messages = if deliveries.is_empty() {
            Vec::new()
        } else {
            vec![message]
        };
        self.store
            .push()
            .end_trigger(
                scope,
                a.record.id,
                &trigger.event_id,
                state,
                &messages,
                &deliveries,
                now,
            )
            .await?;
        if !deliveries.is_empty() {
            self.outbox.wake_all();
        }
        Ok(())
    }

    /// Arms the running triggered campaigns and tells the tap their events.
    pub(super) fn arm(&self, armed: Vec<Armed>) {
        let mut names: HashMap<ProjectId, HashSet<String>> = HashMap::new();
        for a in &armed {
            if let Schedule::Triggered {
                event, cancel_if, ..
            } = &a.plan.schedule
            {
                let of = names.entry(a.record.project_id).or_default();
                of.insert(event.clone());
                if let Some(c) = cancel_if {
                    of.insert(c.clone());
                }
            }
        }
        self.tap.watch(names);
        *self.armed.write() = Arc::new(armed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_flush_waits_until_the_events_handed_over_below_it_are_recorded() {
        let tap = Arc::new(TriggerTap::default());
        let project = ProjectId::new();
        let event = |name: &str| Event::new(project, MessageType::Track, name, "u1", Utc::now());
        // Nothing watched, nothing handed over: every flush may go.
        tap.offer(&[event("add_to_cart")], 5);
        assert!(tap.is_settled(5));
        tap.watch(HashMap::from([(
            project,
            HashSet::from(["add_to_cart".to_string()]),
        )]));
        tap.offer(&[event("page_view")], 8);
        assert!(tap.is_settled(8), "an unwatched event is not waited for");
        tap.offer(&[event("add_to_cart")], 10);
        tap.offer(&[event("add_to_cart")], 12);
        let mut receiver = tap.take_receiver().unwrap();
        assert_eq!(receiver.try_recv().unwrap().1, 10);
        assert_eq!(receiver.try_recv().unwrap().1, 12);
        assert!(!tap.is_settled(10) && !tap.is_settled(20));

        let waiting = tokio::spawn({
            let tap = tap.clone();
            async move { tap.settled(11).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a flush through 11 waits");
        tap.recorded_through(10);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(tap.is_settled(10));
        assert!(
            !waiting.is_finished(),
            "the event of record 11 is not recorded"
        );
        tap.recorded_through(12);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("settled once recorded")
            .unwrap();
        assert!(tap.is_settled(20), "nothing handed over after 12");
    }
}
