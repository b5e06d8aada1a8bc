//! Retirement: files compaction replaced stay on disk for `retire_grace`, for queries
//! that listed them just before, and are deleted by a later pass.

use std::path::PathBuf;

use super::{EventStore, EventStoreError};

impl EventStore {
    /// Deletes replaced files whose grace period is over.
    pub(super) fn delete_retired(&self) -> Result<(), EventStoreError> {
        let grace = self.config.retire_grace;
        let due: Vec<PathBuf> = {
            let mut retired = self.retired.lock();
            let (due, keep): (Vec<_>, Vec<_>) =
                retired.drain(..).partition(|(at, _)| at.elapsed() >= grace);
            *retired = keep;
            due.into_iter().map(|(_, p)| p).collect()
        };
        for path in due {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
