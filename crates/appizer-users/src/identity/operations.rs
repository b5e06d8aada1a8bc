//! The changes the persons API asks for. Each applies its rules here, writes its audit
//! entry in the change's transaction, and makes the workers' cache forget the ids whose
//! person changed.

use appizer_core::person::{MergeReason, MergeRecord, Person, PersonDelta};
use appizer_core::{MergeId, PersonId};
use appizer_storage::persons::{AuditWith, Deleted, Identified, NewPerson, Unlinked};
use appizer_storage::{ProjectScope, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::Identity;

impl Identity {
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
}
