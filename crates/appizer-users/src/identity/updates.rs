//! The person updates the workers gather, held until a flush applies them, and the
//! reads that overlay them so a person is current the moment its event is processed.

use std::collections::HashMap;

use appizer_core::person::{Person, PersonDelta};
use appizer_core::PersonId;
use appizer_storage::persons::{Applied, PersonFilter};
use appizer_storage::{ProjectScope, StoreError};

use super::{held_deltas, Identity};

impl Identity {
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
    /// offset their events reach, under their partition's fence. On failure they
    /// return to the pending ones, to go with the next flush.
    pub async fn apply(&self, at: Option<Applied>) -> Result<(), StoreError> {
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
        let result = self.store.apply_deltas(&deltas, at).await;
        if result.is_err() {
            let mut pending = self.deltas.lock();
            for (scope, person, delta) in deltas {
                pending.entry((scope, person)).or_default().absorb(&delta);
            }
        }
        result
    }

    /// Drops every update held (pending or being applied): a new holding of the
    /// partition replays the events after the applied offset and gathers them again.
    pub fn forget_held(&self) {
        self.deltas.lock().clear();
        *self.applying.lock() = None;
    }

    /// The updates held for a person, not yet in the store.
    pub(super) fn held_for(&self, scope: ProjectScope, person: PersonId) -> PersonDelta {
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

    pub(super) fn overlay(&self, scope: ProjectScope, person: &mut Person, merged_in: &[PersonId]) {
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

    pub(super) async fn must_exist(
        &self,
        scope: ProjectScope,
        id: PersonId,
    ) -> Result<Person, StoreError> {
        self.current(scope, id)
            .await?
            .ok_or_else(|| StoreError::NotFound("person not found".into()))
    }
}
