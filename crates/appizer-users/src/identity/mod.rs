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
//!
//! The module's parts: `resolve` (the workers' resolution and links), `updates` (the
//! person updates held until a flush, and reads that include them), `operations` (the
//! persons API's changes, each with its rules), `profile` (what an event changes on
//! its person).

mod operations;
mod profile;
mod resolve;
#[cfg(test)]
mod tests;
mod updates;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use appizer_core::event::Dialect;
use appizer_core::person::PersonDelta;
use appizer_core::{PersonId, ProjectId};
use appizer_storage::persons::{NewPerson, PersonStore};
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use parking_lot::Mutex;

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

pub(super) type Held = HashMap<(ProjectScope, PersonId), PersonDelta>;

/// The updates held for `key` and not yet in the store: those being applied, then
/// those pending (the order they reach the store in).
pub(super) fn held_deltas<'a>(
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
pub(super) struct Pending {
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

    /// The scope of a project whose events the workers hold, read once.
    pub(super) async fn scope_of(
        &self,
        project: ProjectId,
    ) -> Result<Option<ProjectScope>, StoreError> {
        if let Some(scope) = self.scopes.lock().get(&project) {
            return Ok(Some(*scope));
        }
        let found = self.meta.project_scope(project).await?;
        if let Some(scope) = found {
            self.scopes.lock().insert(project, scope);
        }
        Ok(found)
    }

    pub(super) fn known_scope(&self, project: ProjectId) -> Option<ProjectScope> {
        self.scopes.lock().get(&project).copied()
    }
}
