//! Retirement: files compaction replaced, and the files of deleted projects, leave the
//! catalog at once and stay on disk for `retire_grace`, for queries that listed them
//! just before; a later pass deletes them, with the directories they leave empty.

use std::collections::HashSet;
use std::time::Instant;

use appizer_core::ProjectId;

use super::{EventStore, EventStoreError};
use crate::metadata::EventFile;

impl EventStore {
    /// Takes the files of deleted projects, of this store's partition, out of the
    /// catalog and retires them (rows still buffered for one are swept once flushed).
    /// Returns how many files it retired.
    pub async fn sweep_deleted_projects(&self) -> Result<usize, EventStoreError> {
        let _one_at_a_time = self.compact_lock.lock().await;
        let files = self.own_files().await?;
        Ok(self.sweep_deleted(files).await?.1)
    }

    /// [`sweep_deleted_projects`](Self::sweep_deleted_projects) over the catalogued
    /// `files`, under the compaction lock the caller holds. Returns the files of the
    /// projects that remain, and how many it retired.
    pub(super) async fn sweep_deleted(
        &self,
        files: Vec<EventFile>,
    ) -> Result<(Vec<EventFile>, usize), EventStoreError> {
        let deleted: HashSet<ProjectId> =
            self.catalog.deleted_projects().await?.into_iter().collect();
        let (gone, kept): (Vec<EventFile>, Vec<EventFile>) = files
            .into_iter()
            .partition(|f| deleted.contains(&f.project_id));
        let paths: Vec<String> = gone.into_iter().map(|f| f.path).collect();
        if paths.is_empty() {
            return Ok((kept, 0));
        }
        self.catalog
            .replace_event_files(&[], &paths, self.fence)
            .await?;
        let now = Instant::now();
        self.retired
            .lock()
            .extend(paths.iter().map(|p| (now, p.clone())));
        tracing::info!(
            files = paths.len(),
            "retired the event files of deleted projects"
        );
        Ok((kept, paths.len()))
    }

    /// Deletes replaced files whose grace period is over (with the directories they
    /// leave empty, where there are directories).
    pub(super) async fn delete_retired(&self) -> Result<(), EventStoreError> {
        let grace = self.config.retire_grace;
        let due: Vec<(Instant, String)> = {
            let mut retired = self.retired.lock();
            let (due, keep): (Vec<_>, Vec<_>) =
                retired.drain(..).partition(|(at, _)| at.elapsed() >= grace);
            *retired = keep;
            due
        };
        for (i, (_, path)) in due.iter().enumerate() {
            if let Err(e) = self.files.delete(path).await {
                // Kept for the next pass.
                self.retired.lock().extend(due[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }
}
