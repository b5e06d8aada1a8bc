//! [`Identity`]: identity resolution in the ingestion workers.
//!
//! For each batch of events, in queue order:
//! 1. the distinct ids the cache lacks are looked up in one query per project, and those
//!    with no person are checked against the suppressed ids (their events are dropped);
//! 2. each event's link, if it has one, is applied at once: Segment `identify` with an
//!    anonymous id (and any Segment message carrying both ids), PostHog `$identify`
//!    (`$anon_distinct_id`): [`MergeReason::Identify`]; Segment `alias`, PostHog
//!    `$create_alias`: [`MergeReason::Alias`]; `$merge_dangerously`. The guards: a
//!    placeholder id is never linked; a person known by a user id is never merged into
//!    another implicitly; a person holds at most `max_distinct_ids_per_person` ids.
//!    A refused link is an ingestion warning; the event is kept;
//! 3. the event gets the person of its distinct id, created (in one transaction per
//!    batch) if the id is new; an event with a placeholder distinct id is kept without a
//!    person and warned about;
//! 4. what the event changes on its person (counts, first and last seen, `$set`,
//!    `$set_once`, `$unset`, Segment traits, the latest and initial browser, OS,
//!    device, location, app version, referrer and UTM) is added to the pending
//!    updates, which the workers apply in one transaction per flush, before the
//!    Parquet files, with the queue offset they reach.
//!
//! Links, creations and merges are written at once and are idempotent, so replaying
//! events after a crash resolves them to the same persons; the pending updates of
//! events at or below the recorded offset are not added twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use appizer_core::event::{Dialect, Event, MessageType};
use appizer_core::json::raw_string;
use appizer_core::person::{
    is_placeholder_id, MergeReason, MergeRecord, Person, PersonDelta, ProfileKey,
};
use appizer_core::{MergeId, PersonId, ProjectId};
use appizer_storage::persons::{
    AuditWith, Deleted, Identified, NewPerson, PersonFilter, PersonStore, Unlinked,
};
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cache::IdCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Distinct ids cached per generation (the cache holds up to twice this).
    pub cache_entries: usize,
    /// A link that would give a person more distinct ids than this is refused.
    pub max_distinct_ids_per_person: usize,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            cache_entries: 1_000_000,
            max_distinct_ids_per_person: 1_000,
        }
    }
}

/// A problem with an event's ids, recorded as an ingestion warning. The event is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityWarning {
    pub project_id: ProjectId,
    pub message_id: String,
    pub dialect: Dialect,
    pub field: String,
    pub reason: String,
}

/// What resolving one batch did besides setting person ids.
#[derive(Debug, Default)]
pub struct Resolution {
    pub warnings: Vec<IdentityWarning>,
    /// Events dropped because their distinct id is suppressed.
    pub suppressed: u64,
    pub merges: u64,
}

/// Cache figures, for metrics and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

type Held = HashMap<(ProjectScope, PersonId), PersonDelta>;

/// The updates held for `key` and not yet in the store: those being applied, then
/// those pending (the order they reach the store in).
fn held_deltas<'a>(
    applying: &'a Option<Held>,
    pending: &'a Held,
    key: &(ProjectScope, PersonId),
) -> impl Iterator<Item = &'a PersonDelta> {
    [applying.as_ref().and_then(|a| a.get(key)), pending.get(key)]
        .into_iter()
        .flatten()
}

pub struct Identity {
    meta: Arc<dyn MetadataStore>,
    store: Arc<dyn PersonStore>,
    config: IdentityConfig,
    /// The scopes of the projects whose events the workers have seen.
    scopes: Mutex<HashMap<ProjectId, ProjectScope>>,
    cache: Mutex<IdCache>,
    /// Persons known to be identified (cleared when it grows past the cache size).
    identified: Mutex<HashSet<PersonId>>,
    deltas: Mutex<Held>,
    /// Updates taken for a flush and not yet committed; reads still see them.
    applying: Mutex<Option<Held>>,
    /// Held for writing while updates are committed, for reading while a person is
    /// read and overlaid with the updates not yet in the store: a reader never sees
    /// an update twice or not at all.
    gate: tokio::sync::RwLock<()>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Persons created for new ids of a batch, written together.
#[derive(Default)]
struct Pending {
    new: Vec<NewPerson>,
    index: HashMap<(ProjectId, String), usize>,
}

impl Identity {
    /// Identity over the metadata store's persons.
    pub fn new(meta: Arc<dyn MetadataStore>, config: IdentityConfig) -> Self {
        Self {
            store: meta.persons(),
            meta,
            config,
            scopes: Mutex::new(HashMap::new()),
            cache: Mutex::new(IdCache::new(config.cache_entries)),
            identified: Mutex::new(HashSet::new()),
            deltas: Mutex::new(HashMap::new()),
            applying: Mutex::new(None),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    pub fn store(&self) -> &Arc<dyn PersonStore> {
        &self.store
    }

    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache.lock();
        CacheStats {
            entries: cache.len(),
            bytes: cache.bytes(),
            hits: cache.hits,
            misses: cache.misses,
        }
    }

    /// Forgets cached ids whose person changed outside the workers (API merges,
    /// splits, deletions).
    pub fn forget(&self, project: ProjectId, distinct_ids: &[String]) {
        let mut cache = self.cache.lock();
        for d in distinct_ids {
            cache.remove(project, d);
        }
    }

    /// Forgets every cached id of the project.
    pub fn forget_project(&self, project: ProjectId) {
        self.cache.lock().clear_project(project);
    }

    /// Takes the person updates gathered since the last call for a flush, which
    /// commits them with [`apply`](Self::apply); until then reads still include them.
    /// Returns how many persons they update.
    pub fn take_deltas(&self) -> usize {
        let taken = std::mem::take(&mut *self.deltas.lock());
        if taken.is_empty() {
            return 0;
        }
        let mut applying = self.applying.lock();
        match applying.as_mut() {
            Some(earlier) => {
                for (key, delta) in taken {
                    earlier.entry(key).or_default().absorb(&delta);
                }
            }
            None => *applying = Some(taken),
        }
        applying.as_ref().map_or(0, HashMap::len)
    }

    /// Commits the updates taken by [`take_deltas`](Self::take_deltas) with the queue
    /// offset their events reach. On failure they return to the pending ones, to go
    /// with the next flush.
    pub async fn apply(&self, offset: Option<u64>) -> Result<(), StoreError> {
        let _writing = self.gate.write().await;
        // No reader overlays them meanwhile: reads wait for the gate.
        let deltas: Vec<(ProjectScope, PersonId, PersonDelta)> = self
            .applying
            .lock()
            .take()
            .into_iter()
            .flatten()
            .map(|((scope, person), delta)| (scope, person, delta))
            .collect();
        let result = self.store.apply_deltas(&deltas, offset).await;
        if result.is_err() {
            let mut pending = self.deltas.lock();
            for (scope, person, delta) in deltas {
                pending.entry((scope, person)).or_default().absorb(&delta);
            }
        }
        result
    }

    /// Merges `source` into `target` ([`PersonStore::merge`]); the merge's snapshot of
    /// the source includes the updates held for it, so a split gives them back too.
    #[allow(clippy::too_many_arguments)]
    pub async fn merge(
        &self,
        scope: ProjectScope,
        source: PersonId,
        target: PersonId,
        reason: MergeReason,
        message_id: Option<&str>,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<MergeRecord, StoreError> {
        let _writing = self.gate.write().await;
        let unapplied = self.held_for(scope, source);
        self.store
            .merge(
                scope, source, target, reason, message_id, &unapplied, at, audit,
            )
            .await
    }

    /// Undoes a merge ([`PersonStore::split`]). Updates still held for the restored
    /// person were counted in the merge's snapshot but have reached no one yet: they
    /// stay held for it, and the split leaves them out of what it moves back.
    pub async fn split(
        &self,
        scope: ProjectScope,
        merge: &MergeRecord,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<Option<MergeRecord>, StoreError> {
        let _writing = self.gate.write().await;
        let unapplied = self.held_for(scope, merge.source);
        self.store
            .split(scope, merge.id, &unapplied, at, audit)
            .await
    }

    /// The updates held for a person, not yet in the store.
    fn held_for(&self, scope: ProjectScope, person: PersonId) -> PersonDelta {
        let (applying, pending) = (self.applying.lock(), self.deltas.lock());
        let mut held = PersonDelta::default();
        for delta in held_deltas(&applying, &pending, &(scope, person)) {
            held.absorb(delta);
        }
        held
    }

    /// A person as stored plus the updates the workers hold for it (and for persons
    /// in `merged_in`, whose updates land on it), so a read right after an event
    /// reflects it.
    pub async fn read_person(
        &self,
        scope: ProjectScope,
        person: PersonId,
        merged_in: &[PersonId],
    ) -> Result<Option<Person>, StoreError> {
        let _reading = self.gate.read().await;
        let Some(mut found) = self.store.get(scope, person).await? else {
            return Ok(None);
        };
        self.overlay(scope, &mut found, merged_in);
        Ok(Some(found))
    }

    /// Persons as listed by the store, each with the updates the workers hold for it.
    pub async fn list_persons(
        &self,
        scope: ProjectScope,
        filter: &PersonFilter,
    ) -> Result<Vec<Person>, StoreError> {
        let _reading = self.gate.read().await;
        let mut found = self.store.list(scope, filter).await?;
        for p in &mut found {
            self.overlay(scope, p, &[]);
        }
        Ok(found)
    }

    fn overlay(&self, scope: ProjectScope, person: &mut Person, merged_in: &[PersonId]) {
        let keys: Vec<(ProjectScope, PersonId)> = std::iter::once(person.id)
            .chain(merged_in.iter().copied())
            .map(|id| (scope, id))
            .collect();
        let (applying, pending) = (self.applying.lock(), self.deltas.lock());
        for key in &keys {
            for held in held_deltas(&applying, &pending, key) {
                held.apply_to(person);
            }
        }
    }

    /// The person `id` with the updates held for it and for the persons merged into it.
    pub async fn current(
        &self,
        scope: ProjectScope,
        id: PersonId,
    ) -> Result<Option<Person>, StoreError> {
        let merged_in = self.store.overrides(scope).await?.merged_into(id);
        self.read_person(scope, id, &merged_in).await
    }

    async fn must_exist(&self, scope: ProjectScope, id: PersonId) -> Result<Person, StoreError> {
        self.current(scope, id)
            .await?
            .ok_or_else(|| StoreError::NotFound("person not found".into()))
    }

    // The operations of the persons API. Each applies its rules here, writes its audit
    // entry in the change's transaction, and makes the workers' cache forget the ids
    // whose person changed.

    /// Server-side identify: the person of `distinct_id` (created, identified, if new)
    /// with `$set`, `$set_once` and `$unset` applied at `at`.
    #[allow(clippy::too_many_arguments)]
    pub async fn identify(
        &self,
        scope: ProjectScope,
        distinct_id: &str,
        set: Option<&Map<String, Value>>,
        set_once: Option<&Map<String, Value>>,
        unset: Option<&Value>,
        at: DateTime<Utc>,
        audit: AuditWith<'_, Identified>,
    ) -> Result<Identified, StoreError> {
        let mut delta = PersonDelta {
            identified: true,
            ..Default::default()
        };
        delta
            .properties
            .apply_update(set, set_once, unset, at.timestamp_millis());
        let new = NewPerson {
            distinct_id: distinct_id.to_string(),
            person_id: PersonId::new(),
            is_identified: true,
            at,
        };
        let _writing = self.gate.write().await;
        let done = self.store.identify(scope, &new, &delta, audit).await?;
        self.remember_identified(done.person);
        Ok(done)
    }

    /// Links another distinct id to the person: refused (409) when the person has the
    /// most ids allowed or the id belongs to someone else.
    pub async fn link(
        &self,
        scope: ProjectScope,
        person: PersonId,
        distinct_id: &str,
        at: DateTime<Utc>,
        audit: AuditWith<'_, PersonId>,
    ) -> Result<Person, StoreError> {
        let found = self.must_exist(scope, person).await?;
        if !self.has_room(scope, person, 1).await? {
            let cap = self.config.max_distinct_ids_per_person;
            return Err(StoreError::Conflict(format!(
                "the person has {cap} distinct ids, the most allowed (users.max_distinct_ids_per_person)"
            )));
        }
        let owner = self
            .store
            .add_distinct_id(scope, person, distinct_id, at, audit)
            .await?;
        if owner != person {
            return Err(StoreError::Conflict(format!(
                "distinct id belongs to person {owner}; merge the persons instead"
            )));
        }
        self.forget(scope.project(), &[distinct_id.to_string()]);
        Ok(found)
    }

    /// Moves a distinct id off the person, with its events, onto a new person, which it
    /// returns. A person keeps at least one id: removing the last one is refused (409).
    pub async fn unlink(
        &self,
        scope: ProjectScope,
        person: PersonId,
        distinct_id: &str,
        at: DateTime<Utc>,
        audit: AuditWith<'_, PersonId>,
    ) -> Result<PersonId, StoreError> {
        let outcome = self
            .store
            .remove_distinct_id(scope, person, distinct_id, at, audit)
            .await?;
        match outcome {
            Unlinked::Moved(to) => {
                self.forget(scope.project(), &[distinct_id.to_string()]);
                Ok(to)
            }
            Unlinked::OnlyId => Err(StoreError::Conflict(
                "a person keeps at least one distinct id; delete the person instead".into(),
            )),
            Unlinked::NotTheirs => {
                self.must_exist(scope, person).await?;
                Err(StoreError::NotFound(
                    "distinct id of this person not found".into(),
                ))
            }
        }
    }

    /// Merges `source` into `target` on request (identified persons too): refused when
    /// they are the same person (400 through the caller) or the merged person would have
    /// more ids than allowed (409).
    pub async fn merge_persons(
        &self,
        scope: ProjectScope,
        source: PersonId,
        target: PersonId,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<MergeRecord, StoreError> {
        let total = self.store.distinct_ids(scope, target).await?.len()
            + self.store.distinct_ids(scope, source).await?.len();
        let cap = self.config.max_distinct_ids_per_person;
        if total > cap {
            return Err(StoreError::Conflict(format!(
                "the merged person would have {total} distinct ids, more than {cap} (users.max_distinct_ids_per_person)"
            )));
        }
        let record = self
            .merge(scope, source, target, MergeReason::Api, None, at, audit)
            .await?;
        self.forget(scope.project(), &record.distinct_ids);
        Ok(record)
    }

    /// Undoes a merge into `person`: the one named, or else the newest not yet undone.
    pub async fn split_person(
        &self,
        scope: ProjectScope,
        person: PersonId,
        merge: Option<MergeId>,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<MergeRecord, StoreError> {
        // The log is newest first.
        let found = self
            .store
            .merge_log(scope, person)
            .await?
            .into_iter()
            .find(|m| {
                m.target == person && m.split_at.is_none() && merge.is_none_or(|id| m.id == id)
            })
            .ok_or_else(|| {
                StoreError::NotFound("merge into this person not yet undone not found".into())
            })?;
        let record = self
            .split(scope, &found, at, audit)
            .await?
            .ok_or_else(|| StoreError::NotFound("merge not found".into()))?;
        self.forget(scope.project(), &record.distinct_ids);
        Ok(record)
    }

    /// The merges into and out of the person, newest first; not found for an id that
    /// was never a person's (a person merged away keeps its log).
    pub async fn merges_of(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Vec<MergeRecord>, StoreError> {
        let merges = self.store.merge_log(scope, person).await?;
        if merges.is_empty() {
            self.must_exist(scope, person).await?;
        }
        Ok(merges)
    }

    /// Deletes the person and its ids (and suppresses them, if asked).
    pub async fn delete(
        &self,
        scope: ProjectScope,
        person: PersonId,
        suppress: bool,
        at: DateTime<Utc>,
        audit: AuditWith<'_, Deleted>,
    ) -> Result<Deleted, StoreError> {
        let deleted = self
            .store
            .delete(scope, person, suppress, at, audit)
            .await?
            .ok_or_else(|| StoreError::NotFound("person not found".into()))?;
        self.forget(scope.project(), &deleted.distinct_ids);
        Ok(deleted)
    }

    /// The scope of a project whose events the workers hold, read once.
    async fn scope_of(&self, project: ProjectId) -> Result<Option<ProjectScope>, StoreError> {
        if let Some(scope) = self.scopes.lock().get(&project) {
            return Ok(Some(*scope));
        }
        let found = self.meta.project_scope(project).await?;
        if let Some(scope) = found {
            self.scopes.lock().insert(project, scope);
        }
        Ok(found)
    }

    fn known_scope(&self, project: ProjectId) -> Option<ProjectScope> {
        self.scopes.lock().get(&project).copied()
    }

    /// Resolves the persons of a batch of queue records' events (see the module docs).
    /// Events of suppressed ids are removed. Updates of records at or below
    /// `applied_offset` are already in the store and are not gathered again.
    pub async fn resolve(
        &self,
        records: &mut [(u64, Option<Vec<Event>>)],
        applied_offset: Option<u64>,
    ) -> Result<Resolution, StoreError> {
        let mut out = Resolution::default();
        let projects: HashSet<ProjectId> = records
            .iter()
            .filter_map(|(_, e)| e.as_ref())
            .flatten()
            .map(|e| e.project_id)
            .collect();
        for project in projects {
            if self.scope_of(project).await?.is_none() {
                tracing::warn!(%project, "events of a project that does not exist are kept without persons");
            }
        }
        let scopes = self.scopes.lock().clone();
        let suppressed = self.prefetch(records, &scopes).await?;
        let mut pending = Pending::default();
        let mut replaced: HashMap<PersonId, PersonId> = HashMap::new();
        for (_, events) in records.iter_mut() {
            let Some(events) = events else { continue };
            let mut kept = Vec::with_capacity(events.len());
            for mut e in events.drain(..) {
                if !suppressed.is_empty()
                    && suppressed.contains(&(e.project_id, e.distinct_id.clone()))
                {
                    out.suppressed += 1;
                    continue;
                }
                if !scopes.contains_key(&e.project_id) {
                    kept.push(e);
                    continue;
                }
                if is_placeholder_id(&e.distinct_id) {
                    out.warnings.push(warning(
                        &e,
                        "distinct_id",
                        "is a placeholder id (such as \"anonymous\" or \"null\"); the event is \
                         kept without a person",
                    ));
                    kept.push(e);
                    continue;
                }
                if let Some((other, field, reason)) = link_of(&e) {
                    replaced.extend(self.create_pending(&mut pending).await?);
                    self.link_event(&e, &other, field, reason, &mut out).await?;
                }
                let person = self.person_for(&e, &mut pending);
                if implies_identified(&e) {
                    self.mark_identified(&e, person, &mut pending);
                }
                e.person_id = Some(person);
                kept.push(e);
            }
            *events = kept;
        }
        replaced.extend(self.create_pending(&mut pending).await?);
        let mut deltas = self.deltas.lock();
        for (offset, events) in records.iter_mut() {
            let Some(events) = events else { continue };
            let gather = applied_offset.is_none_or(|applied| *offset > applied);
            for e in events.iter_mut() {
                let (Some(mut person), Some(&scope)) = (e.person_id, scopes.get(&e.project_id))
                else {
                    continue;
                };
                if let Some(actual) = replaced.get(&person) {
                    person = *actual;
                    e.person_id = Some(person);
                }
                if gather {
                    add_event(deltas.entry((scope, person)).or_default(), e);
                }
            }
        }
        Ok(out)
    }

    /// Looks up the ids the cache lacks; returns those of them that are suppressed.
    async fn prefetch(
        &self,
        records: &[(u64, Option<Vec<Event>>)],
        scopes: &HashMap<ProjectId, ProjectScope>,
    ) -> Result<HashSet<(ProjectId, String)>, StoreError> {
        let mut wanted: HashMap<ProjectId, HashSet<String>> = HashMap::new();
        {
            let mut cache = self.cache.lock();
            for e in records.iter().filter_map(|(_, e)| e.as_ref()).flatten() {
                let other = link_of(e).map(|(other, _, _)| other);
                for id in std::iter::once(e.distinct_id.as_str()).chain(other.as_deref()) {
                    if !is_placeholder_id(id) && cache.get(e.project_id, id).is_none() {
                        wanted
                            .entry(e.project_id)
                            .or_default()
                            .insert(id.to_string());
                    }
                }
            }
        }
        let mut suppressed = HashSet::new();
        for (project, ids) in wanted {
            let Some(&scope) = scopes.get(&project) else {
                continue;
            };
            let ids: Vec<String> = ids.into_iter().collect();
            let found = self.store.lookup(scope, &ids).await?;
            let unknown: Vec<String> = ids
                .iter()
                .filter(|d| !found.contains_key(*d))
                .cloned()
                .collect();
            {
                let mut cache = self.cache.lock();
                for (d, p) in &found {
                    cache.insert(project, d, *p);
                }
            }
            if !unknown.is_empty() {
                for d in self.store.suppressed(scope, &unknown).await? {
                    suppressed.insert((project, d));
                }
            }
        }
        Ok(suppressed)
    }

    /// The person of the event's distinct id: cached, or created with the batch.
    fn person_for(&self, e: &Event, pending: &mut Pending) -> PersonId {
        if let Some(p) = self.cache.lock().get(e.project_id, &e.distinct_id) {
            return p;
        }
        let key = (e.project_id, e.distinct_id.clone());
        if let Some(&i) = pending.index.get(&key) {
            return pending.new[i].person_id;
        }
        let person = PersonId::new();
        pending.index.insert(key, pending.new.len());
        pending.new.push(NewPerson {
            distinct_id: e.distinct_id.clone(),
            person_id: person,
            is_identified: false,
            at: Utc::now(),
        });
        person
    }

    /// Writes the batch's new persons; returns proposed ids that lost to a person
    /// created first elsewhere, with the winner.
    async fn create_pending(
        &self,
        pending: &mut Pending,
    ) -> Result<HashMap<PersonId, PersonId>, StoreError> {
        let mut replaced = HashMap::new();
        if pending.new.is_empty() {
            return Ok(replaced);
        }
        let mut by_project: HashMap<ProjectId, Vec<NewPerson>> = HashMap::new();
        for ((project, _), i) in pending.index.drain() {
            by_project
                .entry(project)
                .or_default()
                .push(pending.new[i].clone());
        }
        pending.new.clear();
        for (project, new) in by_project {
            let Some(scope) = self.known_scope(project) else {
                continue;
            };
            let owners = self.store.create(scope, &new).await?;
            let mut cache = self.cache.lock();
            let mut identified = self.identified.lock();
            for n in &new {
                let Some(&owner) = owners.get(&n.distinct_id) else {
                    continue;
                };
                cache.insert(project, &n.distinct_id, owner);
                if owner != n.person_id {
                    replaced.insert(n.person_id, owner);
                } else if n.is_identified {
                    identified.insert(owner);
                }
            }
        }
        Ok(replaced)
    }

    /// Notes that the event names its person by a user id. The store learns it with
    /// the person's updates at the next flush (`PersonDelta::identified`); until then
    /// the workers' guards read it here.
    fn mark_identified(&self, e: &Event, person: PersonId, pending: &mut Pending) {
        if self.identified.lock().contains(&person) {
            return;
        }
        if !pending.new.is_empty() {
            if let Some(&i) = pending.index.get(&(e.project_id, e.distinct_id.clone())) {
                pending.new[i].is_identified = true;
            }
        }
        self.remember_identified(person);
    }

    fn remember_identified(&self, person: PersonId) {
        let mut identified = self.identified.lock();
        if identified.len() >= self.config.cache_entries {
            identified.clear();
        }
        identified.insert(person);
    }

    async fn is_identified(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<bool, StoreError> {
        if self.identified.lock().contains(&person) {
            return Ok(true);
        }
        let identified = self
            .store
            .get(scope, person)
            .await?
            .is_some_and(|p| p.is_identified);
        if identified {
            self.remember_identified(person);
        }
        Ok(identified)
    }

    async fn known(&self, scope: ProjectScope, id: &str) -> Result<Option<PersonId>, StoreError> {
        let project = scope.project();
        if let Some(p) = self.cache.lock().get(project, id) {
            return Ok(Some(p));
        }
        let found = self.store.lookup(scope, &[id.to_string()]).await?;
        let person = found.get(id).copied();
        if let Some(p) = person {
            self.cache.lock().insert(project, id, p);
        }
        Ok(person)
    }

    async fn has_room(
        &self,
        scope: ProjectScope,
        person: PersonId,
        more: usize,
    ) -> Result<bool, StoreError> {
        let have = self.store.distinct_ids(scope, person).await?.len();
        Ok(have + more <= self.config.max_distinct_ids_per_person)
    }

    /// Links `other` to the event's distinct id under the guards.
    async fn link_event(
        &self,
        e: &Event,
        other: &str,
        field: &str,
        reason: MergeReason,
        out: &mut Resolution,
    ) -> Result<(), StoreError> {
        let project = e.project_id;
        let Some(scope) = self.known_scope(project) else {
            return Ok(());
        };
        let main = e.distinct_id.as_str();
        if other == main {
            return Ok(());
        }
        if is_placeholder_id(other) {
            out.warnings.push(warning(
                e,
                field,
                "is a placeholder id (such as \"anonymous\" or \"null\"); not linked",
            ));
            return Ok(());
        }
        let explicit = reason == MergeReason::MergeDangerously;
        let now = Utc::now();
        let full = |out: &mut Resolution| {
            out.warnings.push(warning(
                e,
                field,
                &format!(
                    "not linked: the person would have more than {} distinct ids",
                    self.config.max_distinct_ids_per_person
                ),
            ));
        };
        match (
            self.known(scope, main).await?,
            self.known(scope, other).await?,
        ) {
            (None, None) => {
                let person = PersonId::new();
                let owners = self
                    .store
                    .create(
                        scope,
                        &[NewPerson {
                            distinct_id: main.to_string(),
                            person_id: person,
                            is_identified: true,
                            at: now,
                        }],
                    )
                    .await?;
                let owner = owners.get(main).copied().unwrap_or(person);
                let linked = self
                    .store
                    .add_distinct_id(scope, owner, other, now, None)
                    .await?;
                let mut cache = self.cache.lock();
                cache.insert(project, main, owner);
                cache.insert(project, other, linked);
            }
            (Some(pm), None) => {
                if !self.has_room(scope, pm, 1).await? {
                    full(out);
                    return Ok(());
                }
                let owner = self
                    .store
                    .add_distinct_id(scope, pm, other, now, None)
                    .await?;
                self.cache.lock().insert(project, other, owner);
            }
            (None, Some(po)) => {
                // An alias names a new id of the same person; an identify with the id of
                // someone identified is another user on a shared device.
                if reason == MergeReason::Identify && self.is_identified(scope, po).await? {
                    out.warnings.push(warning(
                        e,
                        field,
                        "not merged: that id belongs to a person identified as someone else",
                    ));
                    return Ok(());
                }
                if !self.has_room(scope, po, 1).await? {
                    full(out);
                    return Ok(());
                }
                let owner = self
                    .store
                    .add_distinct_id(scope, po, main, now, None)
                    .await?;
                self.cache.lock().insert(project, main, owner);
            }
            (Some(pm), Some(po)) if pm == po => {}
            (Some(pm), Some(po)) => {
                if !explicit && self.is_identified(scope, po).await? {
                    out.warnings.push(warning(
                        e,
                        field,
                        "not merged: both ids belong to identified persons (use \
                         $merge_dangerously or the persons API to merge them)",
                    ));
                    return Ok(());
                }
                let incoming = self.store.distinct_ids(scope, po).await?.len();
                if !self.has_room(scope, pm, incoming).await? {
                    full(out);
                    return Ok(());
                }
                let record = self
                    .merge(scope, po, pm, reason, Some(&e.message_id), now, None)
                    .await?;
                out.merges += 1;
                {
                    let mut cache = self.cache.lock();
                    for d in &record.distinct_ids {
                        cache.insert(project, d, pm);
                    }
                }
                if record.source_snapshot.is_identified {
                    self.store.set_identified(scope, pm).await?;
                    self.remember_identified(pm);
                }
            }
        }
        Ok(())
    }
}

/// The id an event links to its distinct id, the field it came from, and why.
fn link_of(e: &Event) -> Option<(String, &'static str, MergeReason)> {
    match (e.message_type, e.dialect) {
        (MessageType::Alias, Dialect::Segment) => e
            .previous_id
            .clone()
            .map(|p| (p, "previousId", MergeReason::Alias)),
        (MessageType::Alias, Dialect::Posthog) => e
            .previous_id
            .clone()
            .map(|p| (p, "properties.alias", MergeReason::Alias)),
        (MessageType::Identify, Dialect::Posthog) => e
            .anonymous_id
            .clone()
            .map(|a| (a, "properties.$anon_distinct_id", MergeReason::Identify)),
        (_, Dialect::Posthog) if e.event == "$merge_dangerously" => e
            .properties
            .str_field("alias")
            .map(|a| (a, "properties.alias", MergeReason::MergeDangerously)),
        // Any Segment message carrying both ids ties them (analytics.js sends both
        // after `identify`).
        (_, Dialect::Segment) => match (&e.user_id, &e.anonymous_id) {
            (Some(_), Some(anon)) => Some((anon.clone(), "anonymousId", MergeReason::Identify)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the event names its person by an id the app chose.
fn implies_identified(e: &Event) -> bool {
    match e.dialect {
        Dialect::Segment => e.user_id.is_some(),
        Dialect::Posthog => matches!(e.message_type, MessageType::Identify | MessageType::Alias),
    }
}

fn warning(e: &Event, field: &str, reason: &str) -> IdentityWarning {
    IdentityWarning {
        project_id: e.project_id,
        message_id: e.message_id.clone(),
        dialect: e.dialect,
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// The object at `raw`, values serde_json cannot hold kept readably.
fn object(raw: Option<&RawValue>) -> Option<Map<String, Value>> {
    match appizer_core::json::parse_readable(raw?.get()) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Adds what one event changes on its person.
fn add_event(delta: &mut PersonDelta, e: &Event) {
    let at = e.timestamp.timestamp_millis();
    delta.saw(at);
    delta.identified |= implies_identified(e);
    let profile = &mut delta.profile;
    let mut latest = |key: ProfileKey, value: Option<&str>| {
        if let Some(v) = value {
            profile.see(key, v, at);
        }
    };
    // Read from the context once, usually by the decoding lanes.
    let context = e.context_fields();
    latest(ProfileKey::Browser, context.browser.as_deref());
    latest(ProfileKey::Os, context.os.as_deref());
    latest(ProfileKey::DeviceType, context.device_type.as_deref());
    latest(ProfileKey::Country, context.country.as_deref());
    latest(ProfileKey::City, context.city.as_deref());
    match e.dialect {
        Dialect::Posthog => {
            let [set, set_once, unset, app_version, referrer, referring_domain, source, medium, campaign, term, content] =
                e.properties.fields([
                    "$set",
                    "$set_once",
                    "$unset",
                    "$app_version",
                    "$referrer",
                    "$referring_domain",
                    "utm_source",
                    "utm_medium",
                    "utm_campaign",
                    "utm_term",
                    "utm_content",
                ]);
            let text = |raw: Option<&RawValue>| raw.and_then(raw_string);
            let not_direct = |raw| text(raw).filter(|r| r != "$direct");
            latest(ProfileKey::AppVersion, text(app_version).as_deref());
            latest(ProfileKey::Referrer, not_direct(referrer).as_deref());
            latest(
                ProfileKey::ReferringDomain,
                not_direct(referring_domain).as_deref(),
            );
            for (key, value) in ProfileKey::UTM
                .into_iter()
                .zip([source, medium, campaign, term, content])
            {
                latest(key, text(value).as_deref());
            }
            let props = &mut delta.properties;
            let unset: Option<Value> =
                unset.and_then(|r| appizer_core::json::parse_readable(r.get()).ok());
            props.apply_update(
                object(set).as_ref(),
                object(set_once).as_ref(),
                unset.as_ref(),
                at,
            );
        }
        Dialect::Segment => {
            latest(ProfileKey::AppVersion, context.app_version.as_deref());
            let referrer = context.referrer.as_deref();
            let domain = referrer.and_then(referring_domain_of);
            latest(ProfileKey::Referrer, referrer);
            latest(ProfileKey::ReferringDomain, domain.as_deref());
            for (key, value) in ProfileKey::UTM.into_iter().zip(&context.campaign) {
                latest(key, value.as_deref());
            }
            if e.message_type == MessageType::Identify {
                delta
                    .properties
                    .apply_update(Some(&e.traits.to_map()), None, None, at);
            }
        }
    }
}

/// `https://www.example.com/a?b` -> `www.example.com`.
fn referring_domain_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::json;

    fn event(dialect: Dialect, kind: MessageType, name: &str, who: &str) -> Event {
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        Event {
            dialect,
            ..Event::new(ProjectId::new(), kind, name, who, at)
        }
    }

    /// A new person after `delta`.
    fn applied(delta: &PersonDelta) -> Person {
        let mut person = Person::new(PersonId::new(), ProjectId::new(), false, Utc::now());
        delta.apply_to(&mut person);
        person
    }

    #[test]
    fn links_come_from_identify_alias_and_both_segment_ids() {
        let mut e = event(Dialect::Segment, MessageType::Identify, "$identify", "u1");
        e.user_id = Some("u1".into());
        e.anonymous_id = Some("a1".into());
        assert_eq!(link_of(&e).unwrap().0, "a1");
        let mut t = event(Dialect::Segment, MessageType::Track, "Clicked", "u1");
        t.user_id = Some("u1".into());
        assert!(link_of(&t).is_none());
        t.anonymous_id = Some("a1".into());
        assert_eq!(link_of(&t).unwrap().2, MergeReason::Identify);
        let mut a = event(Dialect::Posthog, MessageType::Alias, "$create_alias", "u1");
        a.previous_id = Some("x".into());
        assert_eq!(
            link_of(&a).unwrap(),
            ("x".into(), "properties.alias", MergeReason::Alias)
        );
        let mut m = event(
            Dialect::Posthog,
            MessageType::Track,
            "$merge_dangerously",
            "u1",
        );
        m.properties = json!({"alias": "u2"}).try_into().unwrap();
        assert_eq!(link_of(&m).unwrap().2, MergeReason::MergeDangerously);
        let plain = event(Dialect::Posthog, MessageType::Track, "Clicked", "d");
        assert!(link_of(&plain).is_none());
    }

    #[test]
    fn an_event_sets_properties_and_latest_and_initial_context() {
        let mut e = event(Dialect::Posthog, MessageType::Track, "Clicked", "d");
        e.properties = json!({
            "$set": {"plan": "pro"}, "$set_once": {"signup": "2026-01-01"}, "$unset": ["old"],
            "$referrer": "https://news.example/a", "utm_source": "newsletter", "$app_version": "2.1"
        })
        .try_into()
        .unwrap();
        e.context = json!({"browser": {"name": "Firefox"}, "location": {"city": "Lyon"}})
            .try_into()
            .unwrap();
        let mut d = PersonDelta::default();
        add_event(&mut d, &e);
        let person = applied(&d);
        let p = &person.properties;
        assert_eq!(p.get("plan"), Some(&json!("pro")));
        assert_eq!(p.get("signup"), Some(&json!("2026-01-01")));
        assert_eq!(p.get("$browser"), Some(&json!("Firefox")));
        assert_eq!(p.get("$initial_browser"), Some(&json!("Firefox")));
        assert_eq!(p.get("$city"), Some(&json!("Lyon")));
        assert_eq!(p.get("utm_source"), Some(&json!("newsletter")));
        assert_eq!(p.get("$initial_utm_source"), Some(&json!("newsletter")));
        assert_eq!(p.get("$app_version"), Some(&json!("2.1")));
        assert_eq!(d.events, 1);
        assert!(!d.identified);
    }

    #[test]
    fn segment_identify_traits_and_context_fill_the_profile() {
        let mut e = event(Dialect::Segment, MessageType::Identify, "$identify", "u1");
        e.user_id = Some("u1".into());
        e.traits = json!({"email": "a@x.io", "plan": "team"})
            .try_into()
            .unwrap();
        e.context = json!({
            "app": {"version": "5.0"},
            "page": {"referrer": "https://www.Search.example/q?x=1"},
            "campaign": {"source": "ads", "name": "autumn"}
        })
        .try_into()
        .unwrap();
        let mut d = PersonDelta::default();
        add_event(&mut d, &e);
        let person = applied(&d);
        let p = &person.properties;
        assert_eq!(p.get("email"), Some(&json!("a@x.io")));
        assert_eq!(p.get("$app_version"), Some(&json!("5.0")));
        assert_eq!(
            p.get("$referring_domain"),
            Some(&json!("www.search.example"))
        );
        assert_eq!(p.get("utm_campaign"), Some(&json!("autumn")));
        assert!(d.identified);
    }

    /// Identity over a fresh store with one project.
    async fn identity() -> (Identity, ProjectScope, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = appizer_storage::open_metadata_store(&url).await.unwrap();
        let (_, scope, _) =
            appizer_storage::testing::Tenant::create(store.as_ref(), ProjectId::new(), "UTC")
                .await
                .unwrap();
        (Identity::new(store, IdentityConfig::default()), scope, dir)
    }

    fn records(project: ProjectId, who: &[&str]) -> Vec<(u64, Option<Vec<Event>>)> {
        who.iter()
            .enumerate()
            .map(|(i, w)| {
                let mut e = event(Dialect::Segment, MessageType::Track, "x", w);
                e.project_id = project;
                e.user_id = Some(w.to_string());
                (i as u64, Some(vec![e]))
            })
            .collect()
    }

    #[tokio::test]
    async fn updates_of_records_already_applied_are_not_gathered_again() {
        let (identity, scope, _dir) = identity().await;
        let project = scope.project();
        let mut batch = records(project, &["u1", "u2", "u1"]);
        identity.resolve(&mut batch, Some(1)).await.unwrap();
        let persons: Vec<PersonId> = batch
            .iter()
            .map(|(_, e)| e.as_ref().unwrap()[0].person_id.unwrap())
            .collect();
        // Only offset 2 is past the recorded offset: one event of one person.
        assert_eq!(identity.take_deltas(), 1);
        let count = |p: Option<Person>| p.unwrap().event_count;
        let u1 = identity.read_person(scope, persons[0], &[]).await.unwrap();
        let u2 = identity.read_person(scope, persons[1], &[]).await.unwrap();
        assert_eq!((count(u1), count(u2)), (1, 0));
        assert_eq!(persons[0], persons[2]);
        assert_ne!(persons[0], persons[1]);
        // A replay resolves to the same persons, from the store with a cold cache.
        identity.forget_project(project);
        let mut again = records(project, &["u1", "u2", "u1"]);
        identity.resolve(&mut again, None).await.unwrap();
        let replayed: Vec<PersonId> = again
            .iter()
            .map(|(_, e)| e.as_ref().unwrap()[0].person_id.unwrap())
            .collect();
        assert_eq!(replayed, persons);
    }

    #[tokio::test]
    async fn reads_see_held_updates_once_before_and_after_they_are_applied() {
        let (identity, scope, _dir) = identity().await;
        let project = scope.project();
        let mut batch = records(project, &["u1", "u1"]);
        identity.resolve(&mut batch, None).await.unwrap();
        let person = batch[0].1.as_ref().unwrap()[0].person_id.unwrap();
        let count = |p: Option<Person>| p.unwrap().event_count;
        assert_eq!(
            count(identity.read_person(scope, person, &[]).await.unwrap()),
            2
        );
        assert_eq!(identity.take_deltas(), 1);
        assert_eq!(
            count(identity.read_person(scope, person, &[]).await.unwrap()),
            2
        );
        identity.apply(Some(1)).await.unwrap();
        assert_eq!(
            count(identity.read_person(scope, person, &[]).await.unwrap()),
            2
        );
        assert_eq!(identity.store().applied_offset().await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_split_gives_back_what_the_merge_took_however_the_updates_were_timed() {
        // The source's event is still held at the merge; its update is applied before
        // the split, taken for a flush and applied after it, or still held at it.
        for applied in ["before the split", "across the split", "after the split"] {
            let (identity, scope, _dir) = identity().await;
            let project = scope.project();
            let mut batch = records(project, &["a", "b", "b"]);
            identity.resolve(&mut batch, None).await.unwrap();
            let person = |i: usize| batch[i].1.as_ref().unwrap()[0].person_id.unwrap();
            let (a, b) = (person(0), person(1));
            let count = |p: Option<Person>| p.unwrap().event_count;
            let merge = identity
                .merge(scope, a, b, MergeReason::Api, None, Utc::now(), None)
                .await
                .unwrap();
            assert_eq!(merge.source_snapshot.event_count, 1, "{applied}");
            let merged = identity.read_person(scope, b, &[a]).await.unwrap();
            assert_eq!(count(merged), 3, "{applied}");
            match applied {
                "before the split" => {
                    identity.take_deltas();
                    identity.apply(Some(2)).await.unwrap();
                    identity
                        .split(scope, &merge, Utc::now(), None)
                        .await
                        .unwrap();
                }
                "across the split" => {
                    identity.take_deltas();
                    identity
                        .split(scope, &merge, Utc::now(), None)
                        .await
                        .unwrap();
                    identity.apply(Some(2)).await.unwrap();
                }
                _ => {
                    identity
                        .split(scope, &merge, Utc::now(), None)
                        .await
                        .unwrap();
                    identity.take_deltas();
                    identity.apply(Some(2)).await.unwrap();
                }
            }
            let store = identity.store();
            assert_eq!(count(store.get(scope, a).await.unwrap()), 1, "{applied}");
            assert_eq!(count(store.get(scope, b).await.unwrap()), 2, "{applied}");
        }
    }

    #[test]
    fn referring_domains_are_hosts() {
        assert_eq!(referring_domain_of("https://a.b/c").as_deref(), Some("a.b"));
        assert_eq!(
            referring_domain_of("http://u:p@Host.io?x").as_deref(),
            Some("host.io")
        );
        assert_eq!(referring_domain_of("").as_deref(), None);
    }
}
