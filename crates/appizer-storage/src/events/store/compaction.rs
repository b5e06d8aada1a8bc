//! Compaction: the small files of a project-day merged, and files older than the last
//! person change rewritten with the person ids of now, swapped in the catalog in one
//! transaction each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use appizer_core::ProjectId;
use chrono::Utc;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};

use crate::events::schema::event_schema;
use crate::metadata::EventFile;
use crate::persons::PersonOverrides;

use super::flush::{encode_file, sorted_days};
use super::{EventStore, EventStoreError};

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
}

impl EventStore {
    /// Merges the small files of each project-day into files of up to
    /// `compact_target_rows` rows (sorted like every file), and rewrites files that
    /// predate a person merge, split or deletion with the person ids of now (dropping
    /// the events of deleted persons); swaps them in the catalog in one transaction
    /// each, and deletes replaced files after the grace period. First it retires the
    /// files of deleted projects. All of this store's partition only, under its fence;
    /// last, the partition's stray files are collected
    /// ([`remove_uncatalogued_files`](Self::remove_uncatalogued_files)).
    pub async fn compact(&self) -> Result<Compaction, EventStoreError> {
        // Flushes may go on meanwhile: they only add files, and the catalog swap fails
        // (changing nothing) if a file to replace is gone.
        let _one_at_a_time = self.compact_lock.lock().await;
        // One listing serves the sweep and the merge: files flushed after it wait for
        // the next pass.
        let (files, _) = self.sweep_deleted(self.own_files().await?).await?;
        let target = self.config.compact_target_rows;
        // Taken before the overrides are read: a change after it is folded next time.
        let snapshot = Utc::now();
        let overrides = self.catalog.persons().all_overrides().await?;
        let stale = |f: &EventFile| {
            overrides.get(&f.project_id).is_some_and(|o| {
                !o.is_empty()
                    && f.persons_folded_at
                        .is_none_or(|t| t.timestamp_millis() <= o.changed_at_ms)
            })
        };
        let mut partitions: BTreeMap<(ProjectId, String), Vec<EventFile>> = BTreeMap::new();
        let mut groups: Vec<(ProjectId, String, Vec<EventFile>)> = Vec::new();
        for f in files {
            if f.row_count < target / 2 {
                partitions
                    .entry((f.project_id, f.date.clone()))
                    .or_default()
                    .push(f);
            } else if stale(&f) {
                groups.push((f.project_id, f.date.clone(), vec![f]));
            }
        }
        for ((project, date), small) in partitions {
            if small.len() < self.config.compact_min_files {
                // Too few to merge; rewritten alone if persons changed since.
                for f in small.into_iter().filter(|f| stale(f)) {
                    groups.push((project, date.clone(), vec![f]));
                }
                continue;
            }
            // Groups of consecutive files up to the target size.
            let mut current: Vec<EventFile> = Vec::new();
            let mut rows = 0;
            for f in small {
                if rows + f.row_count > target && !current.is_empty() {
                    groups.push((project, date.clone(), std::mem::take(&mut current)));
                    rows = 0;
                }
                rows += f.row_count;
                current.push(f);
            }
            groups.push((project, date.clone(), current));
        }
        let mut done = Compaction::default();
        for (project, date, group) in groups {
            if group.len() < 2 && !group.iter().any(&stale) {
                continue;
            }
            let config = self.config.clone();
            let mut inputs = Vec::with_capacity(group.len());
            for f in &group {
                inputs.push(self.files.get(&f.path).await?);
            }
            let max_offset = group.iter().map(|f| f.max_queue_offset).max().unwrap_or(0);
            let fold = overrides.get(&project).cloned().filter(|o| !o.is_empty());
            let partition = self.fence.partition;
            let merged = self
                .config
                .background
                .clone()
                .run(
                    move || -> Result<Option<(EventFile, bytes::Bytes)>, EventStoreError> {
                        let mut batches = read_files(inputs)?;
                        if let Some(fold) = &fold {
                            batches = fold_persons(batches, fold)?;
                        }
                        // One partition: every row belongs to its day.
                        let order: Vec<(usize, usize)> = sorted_days(&batches)
                            .into_iter()
                            .flat_map(|(_, rows)| rows)
                            .collect();
                        if order.is_empty() {
                            return Ok(None);
                        }
                        let (mut file, bytes) = encode_file(
                            &config, project, &date, &batches, &order, partition, max_offset,
                        )?;
                        file.persons_folded_at = Some(snapshot);
                        Ok(Some((file, bytes)))
                    },
                )
                .await?;
            let removed: Vec<String> = group.iter().map(|f| f.path.clone()).collect();
            let added = self.put_files(merged.into_iter().collect()).await?;
            if let Err(e) = self
                .catalog
                .replace_event_files(&added, &removed, self.fence)
                .await
            {
                self.remove_files(&added).await;
                return Err(e.into());
            }
            let now = Instant::now();
            self.retired
                .lock()
                .extend(removed.iter().map(|p| (now, p.clone())));
            done.files_in += group.len();
            done.files_out += added.len();
            done.rows += added.iter().map(|f| f.row_count).sum::<u64>();
        }
        self.delete_retired().await?;
        self.collect_strays().await?;
        Ok(done)
    }
}

/// The rows of `batches` with the person ids of now under `overrides`, without the
/// events of deleted persons.
pub(super) fn fold_persons(
    batches: Vec<RecordBatch>,
    overrides: &PersonOverrides,
) -> Result<Vec<RecordBatch>, EventStoreError> {
    use datafusion::arrow::array::{BooleanBuilder, StringBuilder};
    use datafusion::arrow::compute::filter_record_batch;
    let schema = event_schema();
    let person_col = schema.index_of("person_id")?;
    let distinct_col = schema.index_of("distinct_id")?;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let persons = batch.column(person_col).as_string::<i32>();
        let ids = batch.column(distinct_col).as_string::<i32>();
        let mut folded = StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 36);
        let mut keep = BooleanBuilder::with_capacity(batch.num_rows());
        let mut changed = false;
        for i in 0..batch.num_rows() {
            let stored = (!persons.is_null(i)).then(|| persons.value(i));
            match stored.and_then(|p| p.parse::<appizer_core::PersonId>().ok()) {
                Some(p) => match overrides.effective(p, ids.value(i)) {
                    Some(now) => {
                        changed |= now != p;
                        folded.append_value(now.to_string());
                        keep.append_value(true);
                    }
                    None => {
                        changed = true;
                        folded.append_null();
                        keep.append_value(false);
                    }
                },
                None => {
                    folded.append_option(stored);
                    keep.append_value(true);
                }
            }
        }
        if !changed {
            out.push(batch);
            continue;
        }
        let mut columns = batch.columns().to_vec();
        columns[person_col] = Arc::new(folded.finish());
        let rewritten = RecordBatch::try_new(batch.schema(), columns)?;
        out.push(filter_record_batch(&rewritten, &keep.finish())?);
    }
    Ok(out)
}

/// All rows of the Parquet files `files`, as batches of the event schema.
pub(super) fn read_files(files: Vec<bytes::Bytes>) -> Result<Vec<RecordBatch>, EventStoreError> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut batches = Vec::new();
    for file in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        for batch in reader {
            batches.push(batch?);
        }
    }
    Ok(batches)
}
