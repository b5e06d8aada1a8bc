//! The person store: persons, their distinct ids, merges and their log, the overrides
//! queries apply to events stored before a merge, deletions and suppressed ids. One
//! trait; one SQL implementation for SQLite and PostgreSQL (`sql.rs`), run against the
//! same conformance suite (`tests/person_conformance.rs`).

mod sql;

use std::collections::{HashMap, HashSet};

use appizer_core::person::{MergeReason, MergeRecord, Person, PersonDelta};
use appizer_core::tenancy::NewAuditEntry;
use appizer_core::{MergeId, PersonId, ProjectId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use sql::SqlPersonStore;

use crate::{ProjectScope, StoreError};

/// A distinct id that had no person, with the person proposed for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPerson {
    pub distinct_id: String,
    pub person_id: PersonId,
    pub is_identified: bool,
    pub at: DateTime<Utc>,
}

/// Which persons a listing returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonFilter {
    /// Every `(key, value)` must equal the person's property.
    pub properties: Vec<(String, Value)>,
    /// A distinct id containing this text (case-insensitive).
    pub distinct_id_contains: Option<String>,
    /// Persons after this one in id order (the page cursor).
    pub after: Option<PersonId>,
    pub limit: u32,
}

/// How a person's events are found again after merges, splits and deletions: an
/// event stored with person `p` and distinct id `d` belongs to
/// `by_pair[(p, d)]`, else `by_person[p]`, else `p`; it is hidden when that person is
/// deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonOverrides {
    pub by_person: HashMap<PersonId, PersonId>,
    pub by_pair: HashMap<(PersonId, String), PersonId>,
    pub deleted: HashSet<PersonId>,
    /// When any of these last changed (ms since the epoch): files folded since then
    /// need no rewrite.
    pub changed_at_ms: i64,
}

impl PersonOverrides {
    /// The person an event stored with `person` and `distinct_id` belongs to now;
    /// `None` if that person was deleted.
    pub fn effective(&self, person: PersonId, distinct_id: &str) -> Option<PersonId> {
        let now = self
            .by_pair
            .get(&(person, distinct_id.to_string()))
            .or_else(|| self.by_person.get(&person))
            .copied()
            .unwrap_or(person);
        (!self.deleted.contains(&now)).then_some(now)
    }

    pub fn is_empty(&self) -> bool {
        self.by_person.is_empty() && self.by_pair.is_empty() && self.deleted.is_empty()
    }

    /// The persons merged into `person` (whose updates land on it).
    pub fn merged_into(&self, person: PersonId) -> Vec<PersonId> {
        self.by_person
            .iter()
            .filter(|(_, to)| **to == person)
            .map(|(from, _)| *from)
            .collect()
    }

    /// The stored person ids whose events may belong to `person` now.
    pub fn stored_ids_of(&self, person: PersonId) -> Vec<PersonId> {
        let mut ids = vec![person];
        ids.extend(
            self.by_person
                .iter()
                .filter(|(_, to)| **to == person)
                .map(|(from, _)| *from),
        );
        ids.extend(
            self.by_pair
                .iter()
                .filter(|(_, to)| **to == person)
                .map(|((from, _), _)| *from),
        );
        ids.sort();
        ids.dedup();
        ids
    }
}

/// What deleting a person did.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted {
    pub distinct_ids: Vec<String>,
    pub suppressed: bool,
}

/// Builds a change's audit entry from its outcome. The store writes the entry in the
/// change's transaction: both land, or neither does.
pub type AuditWith<'a, T> = Option<&'a (dyn Fn(&T) -> NewAuditEntry + Send + Sync)>;

/// What a server-side identify did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    pub person: PersonId,
    /// The distinct id had no person: this one was created for it.
    pub created: bool,
}

/// What removing a distinct id from a person did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    /// The id moved, with its events, onto this new person.
    Moved(PersonId),
    /// The id is not the person's (or the person does not exist).
    NotTheirs,
    /// It is the person's only id: nothing changed.
    OnlyId,
}

/// Every method that touches a project's persons takes its [`ProjectScope`].
/// Where the workers' person updates reach: an offset of one queue partition, written
/// under that partition's fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub fence: crate::leases::Fence,
    pub offset: u64,
}

impl Applied {
    /// Updates up to `offset` of partition 0, by a writer that holds no lease.
    pub const fn unleased(offset: u64) -> Self {
        Self {
            fence: crate::leases::Fence::unleased(0),
            offset,
        }
    }
}

#[async_trait]
pub trait PersonStore: Send + Sync + 'static {
    /// The persons of those of `distinct_ids` that have one.
    async fn lookup(
        &self,
        scope: ProjectScope,
        distinct_ids: &[String],
    ) -> Result<HashMap<String, PersonId>, StoreError>;

    /// Creates the proposed persons whose distinct id still has none, in one
    /// transaction, and returns the person each distinct id belongs to (the proposed
    /// one, or the one created first elsewhere).
    async fn create(
        &self,
        scope: ProjectScope,
        new: &[NewPerson],
    ) -> Result<HashMap<String, PersonId>, StoreError>;

    /// Server-side identify, in one transaction: the person of `new.distinct_id`
    /// (created as proposed if the id has none) gets `delta` applied.
    async fn identify(
        &self,
        scope: ProjectScope,
        new: &NewPerson,
        delta: &PersonDelta,
        audit: AuditWith<'_, Identified>,
    ) -> Result<Identified, StoreError>;

    /// Links `distinct_id` to `person` if the id has no person yet (auditing the link).
    /// Returns the person the id belongs to afterwards.
    async fn add_distinct_id(
        &self,
        scope: ProjectScope,
        person: PersonId,
        distinct_id: &str,
        at: DateTime<Utc>,
        audit: AuditWith<'_, PersonId>,
    ) -> Result<PersonId, StoreError>;

    async fn set_identified(&self, scope: ProjectScope, person: PersonId)
        -> Result<(), StoreError>;

    async fn get(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Option<Person>, StoreError>;

    /// The person's distinct ids, oldest first.
    async fn distinct_ids(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Vec<String>, StoreError>;

    /// Merges `source` into `target` in one transaction: the source's distinct ids move,
    /// its properties, counts and seen times fold into the target (property writes by
    /// event time), it is removed, and its events (and those of persons merged into it
    /// before) belong to the target from now on. Logged with a snapshot of the source,
    /// which includes `unapplied`: updates gathered for the source and not yet applied
    /// (they reach the target when applied; a split gives them back with the rest).
    #[allow(clippy::too_many_arguments)]
    async fn merge(
        &self,
        scope: ProjectScope,
        source: PersonId,
        target: PersonId,
        reason: MergeReason,
        message_id: Option<&str>,
        unapplied: &PersonDelta,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<MergeRecord, StoreError>;

    /// Undoes a merge: the source comes back as it was (same id), with the distinct ids
    /// it brought that are still on the target, and its events, including those the
    /// target received for those ids since. `None` if no such merge (or already undone).
    /// `unapplied`: updates still held for the source, counted in the merge's snapshot
    /// but not yet applied anywhere; they are applied to the restored source later, so
    /// its count and the target's leave them out now.
    async fn split(
        &self,
        scope: ProjectScope,
        merge: MergeId,
        unapplied: &PersonDelta,
        at: DateTime<Utc>,
        audit: AuditWith<'_, MergeRecord>,
    ) -> Result<Option<MergeRecord>, StoreError>;

    /// Merges into and out of `person`, newest first.
    async fn merge_log(
        &self,
        scope: ProjectScope,
        person: PersonId,
    ) -> Result<Vec<MergeRecord>, StoreError>;

    /// Moves `distinct_id` off `person` onto a new person, with the events stored for it,
    /// unless it is the person's only id.
    async fn remove_distinct_id(
        &self,
        scope: ProjectScope,
        person: PersonId,
        distinct_id: &str,
        at: DateTime<Utc>,
        audit: AuditWith<'_, PersonId>,
    ) -> Result<Unlinked, StoreError>;

    /// Applies person updates in one transaction; from the workers, with the queue
    /// offset their events reach in their partition, recorded in the same transaction
    /// under the partition's fence ([`StoreError::Fenced`], changing nothing, once
    /// its lease has passed on). A delta for a person merged away goes to the
    /// survivor; one for a deleted person is dropped.
    async fn apply_deltas(
        &self,
        deltas: &[(ProjectScope, PersonId, PersonDelta)],
        at: Option<Applied>,
    ) -> Result<(), StoreError>;

    /// The highest queue offset of the partition whose person updates are applied.
    async fn applied_offset(&self, partition: u32) -> Result<Option<u64>, StoreError>;

    /// Persons in id order.
    async fn list(
        &self,
        scope: ProjectScope,
        filter: &PersonFilter,
    ) -> Result<Vec<Person>, StoreError>;

    /// A number that changes after every write through this store (on this node):
    /// answers computed from persons are cached under it.
    fn version(&self) -> u64;

    /// Every person of the project with its properties as a JSON object's text, in
    /// id order (for analytics: person-property filters and breakdowns).
    async fn property_table(
        &self,
        scope: ProjectScope,
    ) -> Result<Vec<(PersonId, String)>, StoreError>;

    /// Deletes the person and its distinct ids; its events are hidden from now on. With
    /// `suppress`, later events of those ids are to be dropped. `None` if not there.
    async fn delete(
        &self,
        scope: ProjectScope,
        person: PersonId,
        suppress: bool,
        at: DateTime<Utc>,
        audit: AuditWith<'_, Deleted>,
    ) -> Result<Option<Deleted>, StoreError>;

    /// Those of `distinct_ids` whose events are to be dropped.
    async fn suppressed(
        &self,
        scope: ProjectScope,
        distinct_ids: &[String],
    ) -> Result<HashSet<String>, StoreError>;

    /// The overrides queries of the project apply.
    async fn overrides(&self, scope: ProjectScope) -> Result<PersonOverrides, StoreError>;

    /// Overrides of every project (for compaction).
    async fn all_overrides(&self) -> Result<HashMap<ProjectId, PersonOverrides>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_person_follows_pairs_then_persons_and_hides_deleted() {
        let (a, b, c) = (PersonId::new(), PersonId::new(), PersonId::new());
        let mut o = PersonOverrides::default();
        o.by_person.insert(a, b);
        o.by_pair.insert((b, "anon-1".into()), a);
        assert_eq!(o.effective(a, "x"), Some(b));
        assert_eq!(o.effective(b, "anon-1"), Some(a));
        assert_eq!(o.effective(b, "user"), Some(b));
        assert_eq!(o.effective(c, "c"), Some(c));
        o.deleted.insert(b);
        assert_eq!(o.effective(a, "x"), None);
        let mut stored = o.stored_ids_of(a);
        stored.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(stored, expected);
    }
}
