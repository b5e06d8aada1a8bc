//! Resolution in the workers: each event's person, the links its message asks for
//! under the guards, and the persons new ids get (see the module docs of `identity`).

use std::collections::{HashMap, HashSet};

use appizer_core::event::{Dialect, Event, MessageType};
use appizer_core::person::{is_placeholder_id, MergeReason};
use appizer_core::{PersonId, ProjectId};
use appizer_storage::persons::NewPerson;
use appizer_storage::{ProjectScope, StoreError};
use chrono::Utc;

use super::profile::add_event;
use super::{Identity, IdentityWarning, Pending, Resolution};

impl Identity {
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
    pub(super) async fn prefetch(
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
    pub(super) fn person_for(&self, e: &Event, pending: &mut Pending) -> PersonId {
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
    pub(super) async fn create_pending(
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
    pub(super) fn mark_identified(&self, e: &Event, person: PersonId, pending: &mut Pending) {
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

    pub(super) fn remember_identified(&self, person: PersonId) {
        let mut identified = self.identified.lock();
        if identified.len() >= self.config.cache_entries {
            identified.clear();
        }
        identified.insert(person);
    }

    pub(super) async fn is_identified(
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

    pub(super) async fn known(
        &self,
        scope: ProjectScope,
        id: &str,
    ) -> Result<Option<PersonId>, StoreError> {
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

    pub(super) async fn has_room(
        &self,
        scope: ProjectScope,
        person: PersonId,
        more: usize,
    ) -> Result<bool, StoreError> {
        let have = self.store.distinct_ids(scope, person).await?.len();
        Ok(have + more <= self.config.max_distinct_ids_per_person)
    }

    /// Links `other` to the event's distinct id under the guards.
    pub(super) async fn link_event(
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
pub(super) fn link_of(e: &Event) -> Option<(String, &'static str, MergeReason)> {
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
pub(super) fn implies_identified(e: &Event) -> bool {
    match e.dialect {
        Dialect::Segment => e.user_id.is_some(),
        Dialect::Posthog => matches!(e.message_type, MessageType::Identify | MessageType::Alias),
    }
}

pub(super) fn warning(e: &Event, field: &str, reason: &str) -> IdentityWarning {
    IdentityWarning {
        project_id: e.project_id,
        message_id: e.message_id.clone(),
        dialect: e.dialect,
        field: field.to_string(),
        reason: reason.to_string(),
    }
}
