//! What a start needs: the directory cleared of files the catalog does not list, the
//! highest offset already in files, and the recent events the workers rebuild their
//! memory from.

use appizer_core::ProjectId;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures_util::StreamExt;

use crate::events::schema::event_schema;

use super::flush::file_prefix;
use super::{EventStore, EventStoreError};

/// One stored event, as [`EventStore::for_each_recent_event`] passes it.
#[derive(Debug, Clone, Copy)]
pub struct RecentEvent<'a> {
    pub project_id: ProjectId,
    pub message_id: &'a str,
    pub event: &'a str,
    /// The event's (corrected) time, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub received_ms: i64,
}

impl EventStore {
    /// Removes this store's partition's files under the root that the catalog does not
    /// list and that are older than `retire_grace`: the `.tmp` of an interrupted write,
    /// a file whose catalog entry was never written (a crash between the two, or a
    /// write refused by the fence; its events are replayed from the queue), and a file
    /// compaction replaced whose deletion was due on a worker that stopped. Run when the
    /// workers take the partition and after every compaction; the grace keeps a file
    /// that queries on other nodes listed just before it was replaced. Returns how
    /// many files were removed.
    pub async fn remove_uncatalogued_files(&self) -> Result<usize, EventStoreError> {
        let _no_compaction = self.compact_lock.lock().await;
        self.collect_strays().await
    }

    /// [`remove_uncatalogued_files`](Self::remove_uncatalogued_files) under the
    /// compaction lock the caller holds.
    pub(super) async fn collect_strays(&self) -> Result<usize, EventStoreError> {
        // No flush of this store between the listing and the removals: its new file
        // would be neither listed nor old.
        let _no_flush = self.flush_lock.lock().await;
        let catalogued: std::collections::HashSet<String> = self
            .catalog
            .all_event_files()
            .await?
            .into_iter()
            .map(|f| f.path)
            .collect();
        let prefix = file_prefix(self.fence.partition);
        let legacy = self.fence.partition == 0;
        let ours = |name: &str| name.starts_with(&prefix) || (legacy && !name.starts_with('p'));
        let grace =
            chrono::Duration::from_std(self.config.retire_grace).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let mut removed = 0;
        for file in self.files.list().await? {
            let name = file.path.rsplit('/').next().unwrap_or_default();
            if catalogued.contains(&file.path) || !ours(name) || now - file.modified < grace {
                continue;
            }
            tracing::warn!(file = %file.path, "removing an event file the catalog does not list");
            self.files.delete(&file.path).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The highest offset of this store's partition already stored in a catalogued
    /// file.
    pub async fn flushed_offset(&self) -> Result<Option<u64>, EventStoreError> {
        Ok(self
            .own_files()
            .await?
            .iter()
            .map(|f| f.max_queue_offset)
            .max())
    }

    /// The catalogued files of this store's partition, of every project.
    pub(super) async fn own_files(
        &self,
    ) -> Result<Vec<crate::metadata::EventFile>, EventStoreError> {
        let mut files = self.catalog.all_event_files().await?;
        files.retain(|f| self.owns(f));
        Ok(files)
    }

    /// Calls `each` for every stored event of this store's partition received since
    /// `since`, to rebuild what the
    /// workers keep in memory (the duplicate window, the real-time counters) at start;
    /// returns how many. The files are streamed a batch at a time: a day of a busy
    /// project's events never sits in memory at once (only what `each` keeps of them).
    pub async fn for_each_recent_event(
        &self,
        since: DateTime<Utc>,
        mut each: impl FnMut(RecentEvent<'_>) + Send,
    ) -> Result<u64, EventStoreError> {
        // A file is written after its rows are received, so older files hold none.
        let mut files = self.own_files().await?;
        files.retain(|f| f.created_at >= since);
        self.files.catalogued(&files);
        let files: Vec<String> = files
            .iter()
            .map(|f| self.files.table_path(&f.path))
            .collect();
        if files.is_empty() {
            return Ok(0);
        }
        let schema = event_schema();
        let ctx = SessionContext::new();
        self.files.register(&ctx);
        let mut batches = ctx
            .read_parquet(files, ParquetReadOptions::default().schema(&schema))
            .await?
            .select_columns(&[
                "project_id",
                "message_id",
                "event",
                "timestamp",
                "received_at",
            ])?
            .execute_stream()
            .await?;
        let since_us = since.timestamp_micros();
        let mut seen = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let projects = batch.column(0).as_string::<i32>();
            let ids = batch.column(1).as_string::<i32>();
            let names = batch.column(2).as_string::<i32>();
            let times = batch.column(3).as_primitive::<TimestampMicrosecondType>();
            let received = batch.column(4).as_primitive::<TimestampMicrosecondType>();
            for i in 0..batch.num_rows() {
                let received_us = received.value(i);
                if received_us < since_us {
                    continue;
                }
                if let Ok(project_id) = projects.value(i).parse() {
                    each(RecentEvent {
                        project_id,
                        message_id: ids.value(i),
                        event: names.value(i),
                        timestamp_ms: times.value(i).div_euclid(1000),
                        received_ms: received_us.div_euclid(1000),
                    });
                    seen += 1;
                }
            }
        }
        Ok(seen)
    }
}
