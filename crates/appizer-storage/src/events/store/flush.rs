//! Flushing: the buffer's rows, per project and day, encoded as sorted Parquet files,
//! stored durably and catalogued with the queue offset they reach.

use std::collections::BTreeMap;

use appizer_core::config::ParquetCompression;
use appizer_core::ProjectId;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::events::rollup::Rollup;
use crate::events::schema::event_schema;
use crate::metadata::EventFile;

use super::buffer::{ProjectBuffer, Taken};
use super::{EventStore, EventStoreConfig, EventStoreError, KEY_COLUMNS};

impl EventStore {
    /// Writes the buffer to Parquet files and catalogues them. Returns the highest queue
    /// offset now durable in files (`None` if nothing was buffered).
    pub async fn flush(&self) -> Result<Option<u64>, EventStoreError> {
        match self.take_for_flush() {
            Some(taken) => self.write_taken(taken).await.map(Some),
            None => Ok(None),
        }
    }

    /// Writes rows taken for a flush to Parquet files and catalogues them; returns the
    /// highest queue offset now durable in files. On failure the rows go back to the
    /// buffer.
    pub async fn write_taken(&self, taken: Taken) -> Result<u64, EventStoreError> {
        // One at a time (a second take finds the flushing slot held anyway), and none
        // while stray files are collected.
        let _one_at_a_time = self.flush_lock.lock().await;
        let max_offset = taken.max_offset;
        let take_back = || {
            self.flushing
                .write()
                .take()
                .map(|(_, projects)| projects)
                .unwrap_or_default()
        };
        let config = self.config.clone();
        let partition = self.fence.partition;
        let encoded = self
            .config
            .background
            .run(move || encode_files(&config, taken.projects, partition, max_offset))
            .await;
        let files = match encoded {
            Ok(encoded) => self.put_files(encoded).await,
            Err(e) => Err(e),
        };
        let files = match files {
            Ok(files) => files,
            Err(e) => {
                self.restore(take_back(), max_offset);
                return Err(e);
            }
        };
        if let Err(e) = self.catalog.add_event_files(&files, self.fence).await {
            // The files exist but are not catalogued: remove them and keep the rows (a
            // fenced store's are given up by its workers, whose lease passed on).
            self.remove_files(&files).await;
            self.restore(take_back(), max_offset);
            return Err(e.into());
        }
        *self.flushing.write() = None;
        Ok(max_offset)
    }
}

impl EventStore {
    /// Stores encoded files; returns their catalog entries. On failure none of them
    /// stays (as far as the store answers; what it does not is a stray).
    pub(super) async fn put_files(
        &self,
        encoded: Vec<(EventFile, Bytes)>,
    ) -> Result<Vec<EventFile>, EventStoreError> {
        let mut stored = Vec::with_capacity(encoded.len());
        for (file, bytes) in encoded {
            if let Err(e) = self.files.put(&file.path, bytes).await {
                self.remove_files(&stored).await;
                return Err(e);
            }
            stored.push(file);
        }
        Ok(stored)
    }

    /// Removes uncatalogued files just written (best effort: one left is a stray).
    pub(super) async fn remove_files(&self, files: &[EventFile]) {
        for f in files {
            if let Err(e) = self.files.delete(&f.path).await {
                tracing::warn!(file = %f.path, error = %e, "could not remove an uncatalogued event file; it is collected later");
            }
        }
    }
}

/// Encodes each (project, day) of `projects` as one sorted Parquet file.
pub(super) fn encode_files(
    config: &EventStoreConfig,
    projects: BTreeMap<ProjectId, ProjectBuffer>,
    partition: u32,
    max_offset: u64,
) -> Result<Vec<(EventFile, Bytes)>, EventStoreError> {
    let mut files = Vec::new();
    for (project, buffer) in projects {
        if buffer.batches.is_empty() {
            continue;
        }
        for (date, order) in sorted_days(&buffer.batches) {
            files.push(encode_file(
                config,
                project,
                &date,
                &buffer.batches,
                &order,
                partition,
                max_offset,
            )?);
        }
    }
    Ok(files)
}

/// How the names of a partition's files begin, so its workers can tell its stray files
/// from other partitions' (files written before partitions existed have no prefix and
/// are partition 0's).
pub(super) fn file_prefix(partition: u32) -> String {
    format!("p{partition}-")
}

/// Rows copied into the writer at a time: the sorted copy of a flush never exceeds this.
pub(super) const WRITE_CHUNK_ROWS: usize = 8 * 1024;

/// Encodes the rows of `batches` named by `order` (batch, row), in that order, as the
/// file `project=<id>/date=<day>/p<partition>-<uuid>.parquet`: its catalog entry and
/// its bytes.
pub(super) fn encode_file(
    config: &EventStoreConfig,
    project: ProjectId,
    date: &str,
    batches: &[RecordBatch],
    order: &[(usize, usize)],
    partition: u32,
    max_offset: u64,
) -> Result<(EventFile, Bytes), EventStoreError> {
    let codec = |c: ParquetCompression| -> Result<Compression, EventStoreError> {
        Ok(match c {
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::try_new(1)?),
            ParquetCompression::Lz4Raw => Compression::LZ4_RAW,
            ParquetCompression::Snappy => Compression::SNAPPY,
        })
    };
    let mut properties = WriterProperties::builder()
        .set_compression(codec(config.compression)?)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(config.row_group_rows.max(1)))
        .set_data_page_row_count_limit(config.page_rows.max(1));
    for column in KEY_COLUMNS {
        properties = properties
            .set_column_compression(ColumnPath::from(column), codec(config.key_compression)?);
    }
    let properties = properties.build();
    let dir = format!("project={project}/date={date}");
    let name = format!("{}{}.parquet", file_prefix(partition), uuid::Uuid::now_v7());
    let mut writer = ArrowWriter::try_new(Vec::new(), event_schema(), Some(properties))?;
    let sources: Vec<&RecordBatch> = batches.iter().collect();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut rollup = Rollup::default();
    for chunk in order.chunks(WRITE_CHUNK_ROWS) {
        let sorted = interleave_record_batch(&sources, chunk)?;
        let (lo, hi) = time_range(&sorted);
        (min, max) = (min.min(lo), max.max(hi));
        rollup.add_batch(&sorted);
        writer.write(&sorted)?;
    }
    writer.append_key_value_metadata(rollup.to_metadata());
    let bytes = Bytes::from(writer.into_inner()?);
    let byte_size = bytes.len() as u64;
    if order.is_empty() {
        (min, max) = (0, 0);
    }
    let file = EventFile {
        path: format!("{dir}/{name}"),
        project_id: project,
        date: date.to_string(),
        row_count: order.len() as u64,
        byte_size,
        min_timestamp: min / 1000,
        max_timestamp: max / 1000,
        partition,
        max_queue_offset: max_offset,
        created_at: Utc::now(),
        persons_folded_at: None,
    };
    Ok((file, bytes))
}

/// The first timestamp column of `batch` (`timestamp` in the full schema).
pub(super) fn timestamps(batch: &RecordBatch) -> &TimestampMicrosecondArray {
    let index = batch
        .schema()
        .fields()
        .iter()
        .position(|f| {
            matches!(
                f.data_type(),
                datafusion::arrow::datatypes::DataType::Timestamp(..)
            )
        })
        .expect("a timestamp column");
    batch
        .column(index)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("a timestamp array")
}

pub(super) fn time_range(batch: &RecordBatch) -> (i64, i64) {
    let ts = timestamps(batch);
    let values = ts.values();
    (
        values.iter().copied().min().unwrap_or(0),
        values.iter().copied().max().unwrap_or(0),
    )
}

/// The rows of `batches` as (batch, row) pairs, grouped by the UTC day of their
/// timestamp and, within a day, sorted by event name then time so row groups and pages
/// prune well on both.
pub(super) fn sorted_days(batches: &[RecordBatch]) -> Vec<(String, Vec<(usize, usize)>)> {
    const DAY_MICROS: i64 = 86_400_000_000;
    let columns: Vec<_> = batches
        .iter()
        .map(|b| {
            let events = b
                .column_by_name("event")
                .expect("event column")
                .as_string::<i32>();
            (events, timestamps(b).values())
        })
        .collect();
    let mut rows: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    let key = |&(b, r): &(usize, usize)| {
        let (events, times) = &columns[b];
        (times[r].div_euclid(DAY_MICROS), events.value(r), times[r])
    };
    rows.sort_unstable_by(|x, y| key(x).cmp(&key(y)));
    let mut days: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
    let mut current = None;
    for row in rows {
        let day = key(&row).0;
        if current != Some(day) {
            current = Some(day);
            let date = DateTime::from_timestamp_micros(day * DAY_MICROS)
                .unwrap_or_default()
                .format("%Y-%m-%d")
                .to_string();
            days.push((date, Vec::new()));
        }
        days.last_mut().expect("a day").1.push(row);
    }
    days
}
