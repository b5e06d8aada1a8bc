//! Persons and their properties. Every property remembers the event time of the write
//! that set it, so the result does not depend on the order events arrive in:
//! - `$set` is last-write-wins by event time (a tie goes to the later arrival), and
//!   replaces a `$set_once` value;
//! - `$set_once` sets a key that is absent; between `$set_once` writes the earliest
//!   event wins, so the first value seen stays the first value;
//! - `$unset` removes a key and leaves a tombstone with its time, so an older `$set`
//!   arriving later does not bring the key back.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{MergeId, PersonId, ProjectId};

/// Ids that are never trusted to name a person (case-insensitive, after trimming):
/// clients send them when they have no real id.
const PLACEHOLDER_IDS: [&str; 18] = [
    "anonymous",
    "guest",
    "distinctid",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "undefined",
    "true",
    "false",
    "null",
    "none",
    "nan",
    "0",
    "-1",
    "[object object]",
    "00000000-0000-0000-0000-000000000000",
    "00000000000000000000000000000000",
];

/// Whether `id` is empty, blank or a placeholder such as `"anonymous"` or `"null"`.
pub fn is_placeholder_id(id: &str) -> bool {
    let id = id.trim();
    id.is_empty() || PLACEHOLDER_IDS.iter().any(|p| id.eq_ignore_ascii_case(p))
}

/// How a property was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Write {
    Set,
    SetOnce,
    Unset,
}

/// A person's properties with the time and kind of each key's last write; see the
/// module docs for the rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonProperties {
    values: Map<String, Value>,
    /// Every key ever written, removed ones included (tombstones).
    writes: BTreeMap<String, (i64, Write)>,
}

impl PersonProperties {
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// `$set` at event time `at_ms`. Returns whether the value changed hands.
    pub fn set(&mut self, key: &str, value: Value, at_ms: i64) -> bool {
        let apply = match self.writes.get(key) {
            None | Some((_, Write::SetOnce)) => true,
            Some(&(t, Write::Set | Write::Unset)) => at_ms >= t,
        };
        if apply {
            self.record(key, Some(value), at_ms, Write::Set);
        }
        apply
    }

    /// Stores a write, allocating the key only the first time it is seen.
    fn record(&mut self, key: &str, value: Option<Value>, at_ms: i64, write: Write) {
        match self.writes.get_mut(key) {
            Some(slot) => *slot = (at_ms, write),
            None => {
                self.writes.insert(key.to_string(), (at_ms, write));
            }
        }
        match (value, self.values.get_mut(key)) {
            (Some(v), Some(slot)) => *slot = v,
            (Some(v), None) => {
                self.values.insert(key.to_string(), v);
            }
            (None, Some(_)) => {
                self.values.remove(key);
            }
            (None, None) => {}
        }
    }

    /// `$set_once` at event time `at_ms`.
    pub fn set_once(&mut self, key: &str, value: Value, at_ms: i64) -> bool {
        let apply = match self.writes.get(key) {
            None => true,
            Some(&(t, Write::SetOnce)) => at_ms < t,
            Some((_, Write::Set)) => false,
            // Absent from the unset on: a later set_once finds the key missing.
            Some(&(t, Write::Unset)) => at_ms > t,
        };
        if apply {
            self.record(key, Some(value), at_ms, Write::SetOnce);
        }
        apply
    }

    /// `$unset` at event time `at_ms`.
    pub fn unset(&mut self, key: &str, at_ms: i64) -> bool {
        let apply = match self.writes.get(key) {
            None => true,
            Some(&(t, _)) => at_ms >= t,
        };
        if apply {
            self.record(key, None, at_ms, Write::Unset);
        }
        apply
    }

    /// Replays `other`'s writes onto these, as if its events had been applied here.
    pub fn merge_from(&mut self, other: &PersonProperties) {
        for (key, &(at, write)) in &other.writes {
            match (write, other.values.get(key)) {
                (Write::Set, Some(v)) => {
                    self.set(key, v.clone(), at);
                }
                (Write::SetOnce, Some(v)) => {
                    self.set_once(key, v.clone(), at);
                }
                _ => {
                    self.unset(key, at);
                }
            }
        }
    }

    /// Applies a PostHog-style update: `$set` and `$set_once` objects and a `$unset`
    /// list (or object, whose keys are unset).
    pub fn apply_update(
        &mut self,
        set: Option<&Map<String, Value>>,
        set_once: Option<&Map<String, Value>>,
        unset: Option<&Value>,
        at_ms: i64,
    ) {
        for (k, v) in set.into_iter().flatten() {
            self.set(k, v.clone(), at_ms);
        }
        for (k, v) in set_once.into_iter().flatten() {
            self.set_once(k, v.clone(), at_ms);
        }
        match unset {
            Some(Value::Array(keys)) => {
                for k in keys.iter().filter_map(Value::as_str) {
                    self.unset(k, at_ms);
                }
            }
            Some(Value::Object(keys)) => {
                for k in keys.keys() {
                    self.unset(k, at_ms);
                }
            }
            _ => {}
        }
    }

    /// The values as a JSON object's text.
    pub fn values_json(&self) -> String {
        serde_json::to_string(&self.values).expect("a JSON map always serializes")
    }

    /// The write log as JSON text: `{"key": [event time ms, "set" | "set_once" | "unset"]}`.
    pub fn writes_json(&self) -> String {
        serde_json::to_string(&self.writes).expect("a map of pairs always serializes")
    }

    /// Reads back what [`values_json`](Self::values_json) and
    /// [`writes_json`](Self::writes_json) wrote.
    pub fn from_json(values: &str, writes: &str) -> Result<Self, serde_json::Error> {
        Ok(Self {
            values: serde_json::from_str(values)?,
            writes: serde_json::from_str(writes)?,
        })
    }
}

/// A person as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: PersonId,
    pub project_id: ProjectId,
    /// Whether the person is known by an id the app chose (a user id), not only by
    /// anonymous ids. Two identified persons are never merged implicitly.
    pub is_identified: bool,
    pub properties: PersonProperties,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub event_count: u64,
    pub created_at: DateTime<Utc>,
}

impl Person {
    /// A person with no properties and no events yet.
    pub fn new(
        id: PersonId,
        project_id: ProjectId,
        is_identified: bool,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            project_id,
            is_identified,
            properties: PersonProperties::default(),
            first_seen: None,
            last_seen: None,
            event_count: 0,
            created_at: at,
        }
    }
}

/// What a batch of events changes on one person: applied at once, in one transaction
/// with the rest of the batch, after the events are processed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonDelta {
    pub first_seen_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub events: u64,
    pub properties: PersonProperties,
    /// The profile properties the events keep current, gathered compactly.
    pub profile: Profile,
    pub identified: bool,
}

impl PersonDelta {
    /// Counts one event at `at_ms`.
    pub fn saw(&mut self, at_ms: i64) {
        self.events += 1;
        self.first_seen_ms = Some(self.first_seen_ms.map_or(at_ms, |t| t.min(at_ms)));
        self.last_seen_ms = Some(self.last_seen_ms.map_or(at_ms, |t| t.max(at_ms)));
    }

    /// Adds `other`'s changes to these.
    pub fn absorb(&mut self, other: &PersonDelta) {
        for at in [other.first_seen_ms, other.last_seen_ms]
            .into_iter()
            .flatten()
        {
            self.first_seen_ms = Some(self.first_seen_ms.map_or(at, |t| t.min(at)));
            self.last_seen_ms = Some(self.last_seen_ms.map_or(at, |t| t.max(at)));
        }
        self.events += other.events;
        self.properties.merge_from(&other.properties);
        self.profile.absorb(&other.profile);
        self.identified |= other.identified;
    }

    /// Folds this delta into `person`.
    pub fn apply_to(&self, person: &mut Person) {
        let time = |ms: i64| DateTime::from_timestamp_millis(ms);
        if let Some(first) = self.first_seen_ms.and_then(time) {
            person.first_seen = Some(person.first_seen.map_or(first, |t| t.min(first)));
        }
        if let Some(last) = self.last_seen_ms.and_then(time) {
            person.last_seen = Some(person.last_seen.map_or(last, |t| t.max(last)));
        }
        person.event_count += self.events;
        self.profile.write_into(&mut person.properties);
        person.properties.merge_from(&self.properties);
        person.is_identified |= self.identified;
    }
}

/// The profile properties every event updates: (latest value, initial value).
pub const PROFILE_KEYS: [(&str, &str); 13] = [
    ("$browser", "$initial_browser"),
    ("$os", "$initial_os"),
    ("$device_type", "$initial_device_type"),
    ("$country", "$initial_country"),
    ("$city", "$initial_city"),
    ("$app_version", "$initial_app_version"),
    ("$referrer", "$initial_referrer"),
    ("$referring_domain", "$initial_referring_domain"),
    ("utm_source", "$initial_utm_source"),
    ("utm_medium", "$initial_utm_medium"),
    ("utm_campaign", "$initial_utm_campaign"),
    ("utm_term", "$initial_utm_term"),
    ("utm_content", "$initial_utm_content"),
];

/// Which of [`PROFILE_KEYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ProfileKey {
    Browser,
    Os,
    DeviceType,
    Country,
    City,
    AppVersion,
    Referrer,
    ReferringDomain,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
}

impl ProfileKey {
    pub const UTM: [ProfileKey; 5] = [
        ProfileKey::UtmSource,
        ProfileKey::UtmMedium,
        ProfileKey::UtmCampaign,
        ProfileKey::UtmTerm,
        ProfileKey::UtmContent,
    ];
}

/// A value and the event time it was seen at; latest and initial share one allocation.
type Seen = Option<(i64, Arc<str>)>;

/// The latest and the initial value of each profile key over some events: the same
/// result as `$set` of the latest and `$set_once` of the initial key for every event,
/// kept without a map or an allocation per event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    latest: [Seen; PROFILE_KEYS.len()],
    initial: [Seen; PROFILE_KEYS.len()],
}

impl Profile {
    /// An event at `at_ms` had `value` for `key`.
    pub fn see(&mut self, key: ProfileKey, value: &str, at_ms: i64) {
        if value.is_empty() {
            return;
        }
        let i = key as usize;
        let mut shared: Option<Arc<str>> = None;
        let mut text = || shared.get_or_insert_with(|| Arc::from(value)).clone();
        // Last write wins (a tie goes to the later arrival); the earliest stays initial.
        Self::keep(
            &mut self.latest[i],
            value,
            at_ms,
            |new, old| new >= old,
            &mut text,
        );
        Self::keep(
            &mut self.initial[i],
            value,
            at_ms,
            |new, old| new < old,
            &mut text,
        );
    }

    fn keep(
        slot: &mut Seen,
        value: &str,
        at_ms: i64,
        wins: impl Fn(i64, i64) -> bool,
        text: &mut impl FnMut() -> Arc<str>,
    ) {
        match slot {
            Some((t, v)) if wins(at_ms, *t) => {
                *t = at_ms;
                if **v != *value {
                    *v = text();
                }
            }
            Some(_) => {}
            None => *slot = Some((at_ms, text())),
        }
    }

    pub fn absorb(&mut self, other: &Profile) {
        for i in 0..PROFILE_KEYS.len() {
            if let Some((t, v)) = &other.latest[i] {
                Self::keep(
                    &mut self.latest[i],
                    v,
                    *t,
                    |new, old| new >= old,
                    &mut || v.clone(),
                );
            }
            if let Some((t, v)) = &other.initial[i] {
                Self::keep(
                    &mut self.initial[i],
                    v,
                    *t,
                    |new, old| new < old,
                    &mut || v.clone(),
                );
            }
        }
    }

    /// Writes these into `properties`: `$set` of each latest value, `$set_once` of each
    /// initial one, at their event times.
    pub fn write_into(&self, properties: &mut PersonProperties) {
        for (i, (latest, initial)) in PROFILE_KEYS.iter().enumerate() {
            if let Some((t, v)) = &self.latest[i] {
                properties.set(latest, Value::String(v.to_string()), *t);
            }
            if let Some((t, v)) = &self.initial[i] {
                properties.set_once(initial, Value::String(v.to_string()), *t);
            }
        }
    }
}

/// Why two persons were merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeReason {
    /// Segment `identify` with an anonymous id, PostHog `$identify`.
    Identify,
    /// Segment `alias`, PostHog `$create_alias`.
    Alias,
    /// PostHog `$merge_dangerously`: merges identified persons too.
    MergeDangerously,
    /// An explicit merge through the API.
    Api,
}

impl MergeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeReason::Identify => "identify",
            MergeReason::Alias => "alias",
            MergeReason::MergeDangerously => "merge_dangerously",
            MergeReason::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            MergeReason::Identify,
            MergeReason::Alias,
            MergeReason::MergeDangerously,
            MergeReason::Api,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One entry of the merge log: who was merged into whom, when, why and by which event,
/// with what is needed to undo it.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRecord {
    pub id: MergeId,
    pub project_id: ProjectId,
    /// The person that was merged away.
    pub source: PersonId,
    /// The person that survived.
    pub target: PersonId,
    /// The source's distinct ids, moved to the target.
    pub distinct_ids: Vec<String>,
    /// The source as it was just before the merge (restored by a split).
    pub source_snapshot: Person,
    pub reason: MergeReason,
    /// The message id of the event that caused it, if an event did.
    pub message_id: Option<String>,
    pub merged_at: DateTime<Utc>,
    /// When the merge was undone, if it was.
    pub split_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn placeholders_are_recognized_whatever_their_case_and_padding() {
        for id in [
            "",
            "  ",
            "Anonymous",
            "NULL",
            " undefined ",
            "[object Object]",
            "0",
        ] {
            assert!(is_placeholder_id(id), "{id:?}");
        }
        for id in ["user-1", "anon-3f2", "00", "alice@example.com"] {
            assert!(!is_placeholder_id(id), "{id:?}");
        }
        assert!(is_placeholder_id("00000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn set_is_last_write_wins_by_event_time_whatever_the_arrival_order() {
        let mut p = PersonProperties::default();
        assert!(p.set("plan", json!("pro"), 200));
        assert!(
            !p.set("plan", json!("free"), 100),
            "a late, older event loses"
        );
        assert_eq!(p.get("plan"), Some(&json!("pro")));
        assert!(
            p.set("plan", json!("team"), 200),
            "a tie goes to the later arrival"
        );
        assert_eq!(p.get("plan"), Some(&json!("team")));
    }

    #[test]
    fn set_once_keeps_the_earliest_and_never_replaces_a_set() {
        let mut p = PersonProperties::default();
        p.set_once("source", json!("ads"), 300);
        p.set_once("source", json!("email"), 100);
        p.set_once("source", json!("seo"), 200);
        assert_eq!(p.get("source"), Some(&json!("email")));
        p.set("source", json!("manual"), 50);
        assert_eq!(p.get("source"), Some(&json!("manual")));
        assert!(!p.set_once("source", json!("late"), 10));
        assert_eq!(p.get("source"), Some(&json!("manual")));
    }

    #[test]
    fn unset_leaves_a_tombstone_that_older_writes_cannot_pass() {
        let mut p = PersonProperties::default();
        p.set("email", json!("a@x.io"), 100);
        assert!(p.unset("email", 200));
        assert_eq!(p.get("email"), None);
        assert!(!p.set("email", json!("old@x.io"), 150));
        assert!(!p.set_once("email", json!("older@x.io"), 150));
        assert_eq!(p.get("email"), None);
        assert!(p.set_once("email", json!("new@x.io"), 250));
        assert_eq!(p.get("email"), Some(&json!("new@x.io")));
    }

    #[test]
    fn merging_replays_writes_as_if_the_events_had_come_here() {
        let mut a = PersonProperties::default();
        a.set("plan", json!("pro"), 300);
        a.set_once("first_page", json!("/pricing"), 100);
        let mut b = PersonProperties::default();
        b.set("plan", json!("free"), 200);
        b.set("city", json!("Lyon"), 200);
        b.set_once("first_page", json!("/"), 50);
        b.unset("gone", 10);
        a.merge_from(&b);
        assert_eq!(
            Value::Object(a.values().clone()),
            json!({"plan": "pro", "city": "Lyon", "first_page": "/"})
        );
        let back = PersonProperties::from_json(&a.values_json(), &a.writes_json()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn a_delta_built_from_events_equals_applying_them_one_by_one() {
        let ops: [(&str, Write, i64); 6] = [
            ("a", Write::Set, 5),
            ("a", Write::SetOnce, 1),
            ("b", Write::Unset, 7),
            ("b", Write::Set, 6),
            ("c", Write::SetOnce, 9),
            ("c", Write::SetOnce, 3),
        ];
        let apply = |p: &mut PersonProperties, (k, w, t): (&str, Write, i64)| match w {
            Write::Set => {
                p.set(k, json!(t), t);
            }
            Write::SetOnce => {
                p.set_once(k, json!(t), t);
            }
            Write::Unset => {
                p.unset(k, t);
            }
        };
        let mut stored = PersonProperties::default();
        stored.set("b", json!("kept?"), 4);
        let mut one_by_one = stored.clone();
        let mut delta = PersonProperties::default();
        for op in ops {
            apply(&mut one_by_one, op);
            apply(&mut delta, op);
        }
        stored.merge_from(&delta);
        assert_eq!(stored.values(), one_by_one.values());
    }

    #[test]
    fn a_profile_equals_setting_latest_and_initial_values_event_by_event() {
        let seen = [
            ("Firefox", 20),
            ("Chrome", 30),
            ("Safari", 10),
            ("Edge", 30),
        ];
        let mut one_by_one = PersonProperties::default();
        let mut profile = Profile::default();
        for (browser, at) in seen {
            one_by_one.set("$browser", json!(browser), at);
            one_by_one.set_once("$initial_browser", json!(browser), at);
            profile.see(ProfileKey::Browser, browser, at);
        }
        let mut written = PersonProperties::default();
        profile.write_into(&mut written);
        assert_eq!(written.values(), one_by_one.values());
        assert_eq!(written.get("$browser"), Some(&json!("Edge")));
        assert_eq!(written.get("$initial_browser"), Some(&json!("Safari")));
        let mut halves = Profile::default();
        halves.see(ProfileKey::Browser, "Chrome", 30);
        let mut other = Profile::default();
        other.see(ProfileKey::Browser, "Safari", 10);
        halves.absorb(&other);
        let mut merged = PersonProperties::default();
        halves.write_into(&mut merged);
        assert_eq!(merged.get("$initial_browser"), Some(&json!("Safari")));
        assert_eq!(merged.get("$browser"), Some(&json!("Chrome")));
    }

    #[test]
    fn deltas_fold_counts_and_seen_times() {
        let mut person = Person {
            id: PersonId::new(),
            project_id: ProjectId::new(),
            is_identified: false,
            properties: PersonProperties::default(),
            first_seen: DateTime::from_timestamp_millis(1_000),
            last_seen: DateTime::from_timestamp_millis(2_000),
            event_count: 2,
            created_at: Utc::now(),
        };
        let mut delta = PersonDelta::default();
        delta.saw(500);
        delta.saw(3_000);
        delta.identified = true;
        delta.apply_to(&mut person);
        assert_eq!(person.event_count, 4);
        assert_eq!(person.first_seen, DateTime::from_timestamp_millis(500));
        assert_eq!(person.last_seen, DateTime::from_timestamp_millis(3_000));
        assert!(person.is_identified);
    }
}
