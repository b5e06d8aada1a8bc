//! [`EventStore`]: buffer, flush, catalog, query.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appizer_core::config::ParquetCompression;
use appizer_core::event::Event;
use appizer_core::ProjectId;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::cast;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::prelude::{col, DataFrame, ParquetReadOptions, SessionContext};
use futures_util::StreamExt;
use parking_lot::RwLock;

use super::rollup::Rollup;
use super::schema::{event_schema, events_to_batch, query_schema};
use crate::metadata::{EventFile, MetadataStore};
use crate::persons::PersonOverrides;

use crate::background::{cores, split_across_threads, Background};
use crate::{ProjectScope, StoreError};

#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    /// Where the Parquet files live.
    pub root: PathBuf,
    /// Buffered rows that trigger a flush.
    pub flush_rows: usize,
    /// Age of the oldest buffered row that triggers a flush.
    pub flush_age: Duration,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Files below this many rows are small; compaction merges them into files of
    /// at most this many rows.
    pub compact_target_rows: u64,
    /// A day of a project is compacted once it has at least this many small files.
    pub compact_min_files: usize,
    /// Files replaced by compaction are deleted this long after, so queries that
    /// listed them just before finish reading.
    pub retire_grace: Duration,
    /// Where Parquet files are written and compacted.
    pub background: Background,
    /// Codec of the files written (flushes and compaction)...
    pub compression: ParquetCompression,
    /// ...but for [`KEY_COLUMNS`], which nearly every query reads.
    pub key_compression: ParquetCompression,
    /// Most rows per data page. A selective query decodes whole pages of the columns
    /// it reads; files sorted by event name and time keep its rows on few pages.
    pub page_rows: usize,
}

/// The columns nearly every query reads (time, event name, the ids persons are
/// counted by), written with [`EventStoreConfig::key_compression`].
pub const KEY_COLUMNS: [&str; 4] = ["timestamp", "event", "distinct_id", "person_id"];

impl EventStoreConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            flush_rows: 100_000,
            flush_age: Duration::from_secs(10),
            row_group_rows: 128 * 1024,
            compact_target_rows: 1_000_000,
            compact_min_files: 4,
            retire_grace: Duration::from_secs(60),
            compression: ParquetCompression::Zstd,
            key_compression: ParquetCompression::Lz4Raw,
            page_rows: 4096,
            background: Background::blocking(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    #[error("event store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("event store Arrow/Parquet error: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("event store Parquet error: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("event query failed: {0}")]
    Query(#[from] DataFusionError),
    #[error(transparent)]
    Catalog(#[from] StoreError),
}

/// Rows taken from the buffer for a flush, up to a queue offset.
#[derive(Debug)]
pub struct Taken {
    projects: BTreeMap<ProjectId, ProjectBuffer>,
    max_offset: u64,
}

impl Taken {
    /// The highest queue offset whose events the rows hold.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }
}

/// Buffered batches of one project.
#[derive(Debug, Default, Clone)]
struct ProjectBuffer {
    batches: Vec<RecordBatch>,
}

#[derive(Default)]
struct Buffer {
    projects: BTreeMap<ProjectId, ProjectBuffer>,
    rows: usize,
    oldest: Option<Instant>,
    /// Highest queue offset whose events are buffered.
    max_offset: Option<u64>,
}

/// The event store; see the module docs.
pub struct EventStore {
    config: EventStoreConfig,
    catalog: Arc<dyn MetadataStore>,
    /// Events not yet in Parquet. During a flush, the batches being written stay in
    /// `flushing` (still queried) until their catalog entries exist.
    buffer: RwLock<Buffer>,
    /// With the highest queue offset they hold: once a catalogued file carries that
    /// offset, they are in the files and a query must not read them twice.
    flushing: RwLock<Option<(u64, BTreeMap<ProjectId, ProjectBuffer>)>>,
    flush_lock: tokio::sync::Mutex<()>,
    compact_lock: tokio::sync::Mutex<()>,
    /// Files compaction replaced, with when, awaiting deletion by a later pass.
    retired: parking_lot::Mutex<Vec<(Instant, PathBuf)>>,
    /// Bumped after every change of what a query reads (see [`EventStore::version`]).
    version: std::sync::atomic::AtomicU64,
    /// The rollups of files read so far, by path (`None`: the file has none). Files
    /// never change once written, so an entry stays true while its file is catalogued.
    rollups: parking_lot::Mutex<std::collections::HashMap<String, Option<Arc<Rollup>>>>,
}

/// What a count over a time range reads instead of the events: the rollups of the
/// catalogued files in range, and one of the buffered rows (see [`EventStore::counts`]);
/// or, where rollups may count events that are no longer to be counted, those rows to
/// scan.
#[derive(Debug, Default)]
pub struct Counts {
    pub files: Vec<Arc<Rollup>>,
    pub buffered: Rollup,
    pub scan: Unrolled,
}

/// Rows of a count that are scanned rather than added up from rollups: files not
/// rewritten since persons last changed, and the buffered rows with them.
#[derive(Debug, Default, Clone)]
pub struct Unrolled {
    /// Paths under the store's root.
    pub files: Vec<String>,
    pub batches: Vec<RecordBatch>,
}

impl Unrolled {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.batches.iter().all(|b| b.num_rows() == 0)
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("root", &self.config.root)
            .finish_non_exhaustive()
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Below this many events a step's rows become one batch on the calling thread:
/// starting threads would cost more than they save.
const PARALLEL_BATCH_ROWS: usize = 4 * 1024;

/// `events` as Arrow batches in their order, built on every core for a big step (the
/// conversion reads each event's context JSON; on one thread it held back the workers
/// once the gateway left them both cores).
fn to_batches(events: &[Event]) -> Result<Vec<RecordBatch>, EventStoreError> {
    let cores = cores();
    if cores < 2 || events.len() < PARALLEL_BATCH_ROWS {
        return Ok(vec![events_to_batch(events)?]);
    }
    let chunk = events
        .len()
        .div_ceil(cores.min(events.len() / (PARALLEL_BATCH_ROWS / 2)));
    split_across_threads(events, chunk, |_, part| events_to_batch(part))
        .into_iter()
        .map(|batch| batch.map_err(EventStoreError::from))
        .collect()
}

impl EventStore {
    pub fn open(
        config: EventStoreConfig,
        catalog: Arc<dyn MetadataStore>,
    ) -> Result<Self, EventStoreError> {
        std::fs::create_dir_all(&config.root)?;
        Ok(Self {
            config,
            catalog,
            buffer: RwLock::new(Buffer::default()),
            flushing: RwLock::new(None),
            flush_lock: tokio::sync::Mutex::new(()),
            compact_lock: tokio::sync::Mutex::new(()),
            retired: parking_lot::Mutex::new(Vec::new()),
            version: std::sync::atomic::AtomicU64::new(0),
            rollups: parking_lot::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Removes files under the root that the catalog does not list: the `.tmp` of an
    /// interrupted write, and a file whose catalog entry was never written (a crash
    /// between the two; its events are replayed from the queue). Run at start, before
    /// the workers, so the directory holds exactly the catalogued events for any
    /// Parquet reader. Returns how many files were removed.
    pub async fn remove_uncatalogued_files(&self) -> Result<usize, EventStoreError> {
        let catalogued: std::collections::HashSet<PathBuf> = self
            .catalog
            .all_event_files()
            .await?
            .into_iter()
            .map(|f| self.config.root.join(f.path))
            .collect();
        let mut removed = 0;
        let mut stack = vec![self.config.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !catalogued.contains(&path) {
                    tracing::warn!(file = %path.display(), "removing an event file the catalog does not list");
                    std::fs::remove_file(&path)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The highest queue offset already stored in a catalogued file.
    pub async fn flushed_offset(&self) -> Result<Option<u64>, EventStoreError> {
        Ok(self
            .catalog
            .all_event_files()
            .await?
            .iter()
            .map(|f| f.max_queue_offset)
            .max())
    }

    /// Buffers `events` (from queue records up to `max_offset`); queryable at once.
    pub fn append(&self, events: Vec<Event>, max_offset: u64) -> Result<(), EventStoreError> {
        let mut by_project: BTreeMap<ProjectId, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_project.entry(e.project_id).or_default().push(e);
        }
        let mut batches = Vec::with_capacity(by_project.len());
        for (project, events) in by_project {
            for batch in to_batches(&events)? {
                batches.push((project, batch));
            }
        }
        let mut buffer = self.buffer.write();
        for (project, batch) in batches {
            buffer.rows += batch.num_rows();
            buffer
                .projects
                .entry(project)
                .or_default()
                .batches
                .push(batch);
        }
        buffer.oldest.get_or_insert_with(Instant::now);
        buffer.max_offset = Some(buffer.max_offset.map_or(max_offset, |m| m.max(max_offset)));
        drop(buffer);
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// A number that changes whenever events are added. Flushes and compaction move
    /// rows without changing what a query answers (merges and deletions they fold in
    /// are already applied by every query), so they leave it as it is.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks queue records up to `offset` as buffered even if they held no event (all
    /// dropped as duplicates), so the flush commits past them.
    pub fn note_offset(&self, offset: u64) {
        let mut buffer = self.buffer.write();
        buffer.max_offset = Some(buffer.max_offset.map_or(offset, |m| m.max(offset)));
        buffer.oldest.get_or_insert_with(Instant::now);
    }

    /// Rows waiting in memory.
    pub fn buffered_rows(&self) -> usize {
        self.buffer.read().rows
    }

    /// Whether the buffer holds twice the flush size: the consumer should wait for the
    /// running flush before buffering more, so memory stays bounded when writing
    /// Parquet is slower than ingestion.
    pub fn is_full(&self) -> bool {
        self.buffer.read().rows >= 2 * self.config.flush_rows
    }

    /// Whether the buffer is big or old enough to flush.
    pub fn should_flush(&self) -> bool {
        let buffer = self.buffer.read();
        buffer.rows >= self.config.flush_rows
            || buffer
                .oldest
                .is_some_and(|t| t.elapsed() >= self.config.flush_age)
    }

    /// Writes the buffer to Parquet files and catalogues them. Returns the highest queue
    /// offset now durable in files (`None` if nothing was buffered).
    pub async fn flush(&self) -> Result<Option<u64>, EventStoreError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        match self.take_for_flush() {
            Some(taken) => self.write_taken(taken).await.map(Some),
            None => Ok(None),
        }
    }

    /// Takes what is buffered for a flush; the rows stay queryable until their files are
    /// catalogued. `None` if nothing is buffered or a flush is still writing. Pass the
    /// result to [`write_taken`](Self::write_taken).
    pub fn take_for_flush(&self) -> Option<Taken> {
        let mut buffer = self.buffer.write();
        let mut flushing = self.flushing.write();
        if flushing.is_some() {
            return None;
        }
        let max_offset = buffer.max_offset?;
        let taken = std::mem::take(&mut *buffer);
        *flushing = Some((max_offset, taken.projects.clone()));
        Some(Taken {
            projects: taken.projects,
            max_offset,
        })
    }

    /// Gives rows taken for a flush back to the buffer (the flush is not going ahead).
    pub fn untake(&self, taken: Taken) {
        *self.flushing.write() = None;
        self.restore(taken.projects, taken.max_offset);
    }

    /// Writes rows taken for a flush to Parquet files and catalogues them; returns the
    /// highest queue offset now durable in files. On failure the rows go back to the
    /// buffer.
    pub async fn write_taken(&self, taken: Taken) -> Result<u64, EventStoreError> {
        let max_offset = taken.max_offset;
        let take_back = || {
            self.flushing
                .write()
                .take()
                .map(|(_, projects)| projects)
                .unwrap_or_default()
        };
        let config = self.config.clone();
        let written = self
            .config
            .background
            .run(move || write_files(&config, taken.projects, max_offset))
            .await;
        let files = match written {
            Ok(files) => files,
            Err(e) => {
                self.restore(take_back(), max_offset);
                return Err(e);
            }
        };
        if let Err(e) = self.catalog.add_event_files(&files).await {
            // The files exist but are not catalogued: remove them and keep the rows.
            for f in &files {
                let _ = std::fs::remove_file(self.config.root.join(&f.path));
            }
            self.restore(take_back(), max_offset);
            return Err(e.into());
        }
        *self.flushing.write() = None;
        Ok(max_offset)
    }

    /// Merges the small files of each project-day into files of up to
    /// `compact_target_rows` rows (sorted like every file), and rewrites files that
    /// predate a person merge, split or deletion with the person ids of now (dropping
    /// the events of deleted persons); swaps them in the catalog in one transaction
    /// each, and deletes replaced files after the grace period.
    pub async fn compact(&self) -> Result<Compaction, EventStoreError> {
        // Flushes may go on meanwhile: they only add files, and the catalog swap fails
        // (changing nothing) if a file to replace is gone.
        let _one_at_a_time = self.compact_lock.lock().await;
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
        for f in self.catalog.all_event_files().await? {
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
            let inputs: Vec<PathBuf> = group.iter().map(|f| config.root.join(&f.path)).collect();
            let max_offset = group.iter().map(|f| f.max_queue_offset).max().unwrap_or(0);
            let fold = overrides.get(&project).cloned().filter(|o| !o.is_empty());
            let merged = self
                .config
                .background
                .clone()
                .run(move || -> Result<Option<EventFile>, EventStoreError> {
                    let mut batches = read_files(&inputs)?;
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
                    let mut file =
                        write_file(&config, project, &date, &batches, &order, max_offset)?;
                    file.persons_folded_at = Some(snapshot);
                    Ok(Some(file))
                })
                .await?;
            let removed: Vec<String> = group.iter().map(|f| f.path.clone()).collect();
            let added: Vec<EventFile> = merged.into_iter().collect();
            if let Err(e) = self.catalog.replace_event_files(&added, &removed).await {
                for f in &added {
                    let _ = std::fs::remove_file(self.config.root.join(&f.path));
                }
                return Err(e.into());
            }
            let now = Instant::now();
            self.retired
                .lock()
                .extend(removed.iter().map(|p| (now, self.config.root.join(p))));
            done.files_in += group.len();
            done.files_out += added.len();
            done.rows += added.iter().map(|f| f.row_count).sum::<u64>();
        }
        self.delete_retired()?;
        Ok(done)
    }

    /// Deletes replaced files whose grace period is over.
    fn delete_retired(&self) -> Result<(), EventStoreError> {
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

    /// Puts batches whose flush failed back in front of the buffer.
    fn restore(&self, projects: BTreeMap<ProjectId, ProjectBuffer>, max_offset: u64) {
        let mut buffer = self.buffer.write();
        for (project, mut old) in projects {
            buffer.rows += old.batches.iter().map(|b| b.num_rows()).sum::<usize>();
            let entry = buffer.projects.entry(project).or_default();
            old.batches.append(&mut entry.batches);
            entry.batches = old.batches;
        }
        buffer.max_offset = Some(buffer.max_offset.map_or(max_offset, |m| m.max(max_offset)));
        buffer.oldest = Some(Instant::now());
    }

    /// Calls `each` for every stored event received since `since`, to rebuild what the
    /// workers keep in memory (the duplicate window, the real-time counters) at start;
    /// returns how many. The files are streamed a batch at a time: a day of a busy
    /// project's events never sits in memory at once (only what `each` keeps of them).
    pub async fn for_each_recent_event(
        &self,
        since: DateTime<Utc>,
        mut each: impl FnMut(RecentEvent<'_>) + Send,
    ) -> Result<u64, EventStoreError> {
        // A file is written after its rows are received, so older files hold none.
        let files: Vec<String> = self
            .catalog
            .all_event_files()
            .await?
            .into_iter()
            .filter(|f| f.created_at >= since)
            .map(|f| self.config.root.join(&f.path).display().to_string())
            .collect();
        if files.is_empty() {
            return Ok(0);
        }
        let schema = event_schema();
        let ctx = SessionContext::new();
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

    /// The project's buffered batches and its catalogued files whose time range meets
    /// `[from, to)`, as of one moment: memory first, buffer and flushing slot together
    /// (a flush moves rows from one to the other under the buffer lock); then the
    /// catalog. Rows of a flush that got catalogued in between are read from its files
    /// only.
    async fn snapshot(
        &self,
        scope: ProjectScope,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<(Vec<RecordBatch>, Vec<EventFile>), EventStoreError> {
        let project = scope.project();
        let (from_ms, to_ms) = (
            from.map_or(i64::MIN, |t| t.timestamp_millis()),
            to.map_or(i64::MAX, |t| t.timestamp_millis()),
        );
        let (mut batches, flushing) = {
            let buffer = self.buffer.read();
            let flushing = self.flushing.read().as_ref().map(|(offset, projects)| {
                let batches = projects.get(&project).map(|p| p.batches.clone());
                (*offset, batches.unwrap_or_default())
            });
            let own = buffer.projects.get(&project).map(|p| p.batches.clone());
            (own.unwrap_or_default(), flushing)
        };
        let catalogued = self.catalog.list_event_files(scope).await?;
        if let Some((offset, flushing_batches)) = flushing {
            if !catalogued.iter().any(|f| f.max_queue_offset >= offset) {
                batches.extend(flushing_batches);
            }
        }
        let files = catalogued
            .into_iter()
            .filter(|f| f.max_timestamp >= from_ms && f.min_timestamp <= to_ms)
            .collect();
        Ok((batches, files))
    }

    /// A DataFrame over the project's events whose timestamps may fall in
    /// `[from, to)`: catalogued files pruned by their time range, plus buffered rows.
    pub async fn events(
        &self,
        ctx: &SessionContext,
        scope: ProjectScope,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<DataFrame, EventStoreError> {
        let (batches, files) = self.snapshot(scope, from, to).await?;
        let files = files.into_iter().map(|f| f.path).collect();
        self.read(ctx, Unrolled { files, batches }).await
    }

    /// The rows of `rows` as one table (the files read as they are, unfiltered).
    pub async fn read(
        &self,
        ctx: &SessionContext,
        rows: Unrolled,
    ) -> Result<DataFrame, EventStoreError> {
        let files: Vec<String> = rows
            .files
            .iter()
            .map(|f| self.config.root.join(f).display().to_string())
            .collect();
        let memory = MemTable::try_new(event_schema(), vec![rows.batches])?;
        // Buffered rows in the schema the files are read in.
        let schema = query_schema();
        let memory = ctx.read_table(Arc::new(memory))?.select(
            schema
                .fields()
                .iter()
                .map(|f| cast(col(f.name()), f.data_type().clone()).alias(f.name()))
                .collect::<Vec<_>>(),
        )?;
        if files.is_empty() {
            return Ok(memory);
        }
        let stored = ctx
            .read_parquet(files, ParquetReadOptions::default().schema(&schema))
            .await?;
        Ok(stored.union(memory)?)
    }

    /// What counting the project's events in `[from, to)` needs: the rollups of the
    /// files in range and the buffered rows, from the same moment as [`Self::events`]
    /// would read. `None` when a file in range has no rollup (written by an earlier
    /// version), or one that does not add up to the file's rows.
    ///
    /// With `folded_after` (ms since the epoch: when the project's person merges,
    /// splits or deletions last changed), only files rewritten with the persons of
    /// after that time (compaction drops deleted persons' events) count by rollup;
    /// the others and the buffered rows come back in [`Counts::scan`].
    pub async fn counts(
        &self,
        scope: ProjectScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        folded_after: Option<i64>,
    ) -> Result<Option<Counts>, EventStoreError> {
        let (buffered, files) = self.snapshot(scope, Some(from), Some(to)).await?;
        let mut scan = Unrolled::default();
        let (files, buffered) = match folded_after {
            None => (files, buffered),
            Some(ms) => {
                let (folded, stale): (Vec<EventFile>, Vec<EventFile>) =
                    files.into_iter().partition(|f| {
                        f.persons_folded_at
                            .is_some_and(|t| t.timestamp_millis() > ms)
                    });
                scan.files = stale.into_iter().map(|f| f.path).collect();
                scan.batches = buffered;
                (folded, Vec::new())
            }
        };
        let missing: Vec<EventFile> = {
            let known = self.rollups.lock();
            files
                .iter()
                .filter(|f| !known.contains_key(&f.path))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let root = self.config.root.clone();
            let read = tokio::task::spawn_blocking(move || {
                missing
                    .into_iter()
                    .map(|f| {
                        let rollup = Rollup::read(&root.join(&f.path))?
                            .filter(|r| r.total() == f.row_count)
                            .map(Arc::new);
                        Ok((f.path, rollup))
                    })
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .await
            .map_err(|e| EventStoreError::Io(std::io::Error::other(e)))??;
            let mut known = self.rollups.lock();
            // Bounded: past a few times this query's files, keep only those (files
            // replaced by compaction go; others in use are read again when asked).
            if known.len() > 4 * files.len().max(256) {
                let listed: std::collections::HashSet<&str> =
                    files.iter().map(|f| f.path.as_str()).collect();
                known.retain(|path, _| listed.contains(path.as_str()));
            }
            known.extend(read);
        }
        let known = self.rollups.lock();
        let mut rollups = Vec::with_capacity(files.len());
        for f in &files {
            match known.get(&f.path) {
                Some(Some(rollup)) => rollups.push(rollup.clone()),
                _ => return Ok(None),
            }
        }
        let mut rollup = Rollup::default();
        for batch in &buffered {
            rollup.add_batch(batch);
        }
        Ok(Some(Counts {
            files: rollups,
            buffered: rollup,
            scan,
        }))
    }
}

/// Writes each (project, day) of `projects` to one sorted Parquet file; durable on return.
fn write_files(
    config: &EventStoreConfig,
    projects: BTreeMap<ProjectId, ProjectBuffer>,
    max_offset: u64,
) -> Result<Vec<EventFile>, EventStoreError> {
    let mut files = Vec::new();
    for (project, buffer) in projects {
        if buffer.batches.is_empty() {
            continue;
        }
        for (date, order) in sorted_days(&buffer.batches) {
            files.push(write_file(
                config,
                project,
                &date,
                &buffer.batches,
                &order,
                max_offset,
            )?);
        }
    }
    Ok(files)
}

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

/// Rows copied into the writer at a time: the sorted copy of a flush never exceeds this.
const WRITE_CHUNK_ROWS: usize = 8 * 1024;

/// Writes the rows of `batches` named by `order` (batch, row), in that order, as
/// `project=<id>/date=<day>/<uuid>.parquet`, durably (file and directory entries
/// fsync'd), and returns its catalog entry.
fn write_file(
    config: &EventStoreConfig,
    project: ProjectId,
    date: &str,
    batches: &[RecordBatch],
    order: &[(usize, usize)],
    max_offset: u64,
) -> Result<EventFile, EventStoreError> {
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
    let name = format!("{}.parquet", uuid::Uuid::now_v7());
    let full_dir = config.root.join(&dir);
    std::fs::create_dir_all(&full_dir)?;
    let tmp = full_dir.join(format!("{name}.tmp"));
    let mut writer = ArrowWriter::try_new(File::create(&tmp)?, event_schema(), Some(properties))?;
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
    let file = writer.into_inner()?;
    file.sync_all()?;
    let byte_size = file.metadata()?.len();
    std::fs::rename(&tmp, full_dir.join(&name))?;
    // The file's entry, and the partition directories' own entries if new.
    sync_dir(&full_dir)?;
    if let Some(project_dir) = full_dir.parent() {
        sync_dir(project_dir)?;
    }
    sync_dir(&config.root)?;
    if order.is_empty() {
        (min, max) = (0, 0);
    }
    Ok(EventFile {
        path: format!("{dir}/{name}"),
        project_id: project,
        date: date.to_string(),
        row_count: order.len() as u64,
        byte_size,
        min_timestamp: min / 1000,
        max_timestamp: max / 1000,
        max_queue_offset: max_offset,
        created_at: Utc::now(),
        persons_folded_at: None,
    })
}

/// The rows of `batches` with the person ids of now under `overrides`, without the
/// events of deleted persons.
fn fold_persons(
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

/// All rows of the Parquet files at `paths`, as batches of the event schema.
fn read_files(paths: &[PathBuf]) -> Result<Vec<RecordBatch>, EventStoreError> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut batches = Vec::new();
    for path in paths {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
        for batch in reader {
            batches.push(batch?);
        }
    }
    Ok(batches)
}

/// The first timestamp column of `batch` (`timestamp` in the full schema).
fn timestamps(batch: &RecordBatch) -> &TimestampMicrosecondArray {
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

fn time_range(batch: &RecordBatch) -> (i64, i64) {
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
fn sorted_days(batches: &[RecordBatch]) -> Vec<(String, Vec<(usize, usize)>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::schema::{batch_to_events, VIEW_COLUMNS};
    use crate::open_metadata_store;
    use appizer_core::event::MessageType;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::{col, lit};
    use serde_json::json;

    fn events(project: ProjectId, n: usize, day_offset: i64) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let at =
                    DateTime::from_timestamp(1_795_000_000 + day_offset * 86_400 + i as i64, 0)
                        .unwrap();
                Event {
                    message_id: format!("m{day_offset}-{i}"),
                    anonymous_id: Some(format!("u{i}")),
                    properties: json!({"i": i}).try_into().unwrap(),
                    ..Event::new(
                        project,
                        MessageType::Track,
                        ["b", "a", "c"][i % 3],
                        format!("u{i}"),
                        at,
                    )
                }
            })
            .collect()
    }

    /// A SQLite metadata store in `dir`, the file catalog of the tests.
    async fn sqlite_catalog(dir: &Path) -> Arc<dyn MetadataStore> {
        open_metadata_store(&format!("sqlite://{}", dir.join("m.db").display()))
            .await
            .unwrap()
    }

    /// A store in `dir` whose compaction deletes replaced files at its next pass.
    async fn compacting_store(dir: &Path) -> (EventStore, Arc<dyn MetadataStore>) {
        let catalog = sqlite_catalog(dir).await;
        let config = EventStoreConfig {
            retire_grace: Duration::ZERO,
            ..EventStoreConfig::new(dir.join("events"))
        };
        (EventStore::open(config, catalog.clone()).unwrap(), catalog)
    }

    async fn count(store: &EventStore, project: ProjectId) -> usize {
        let ctx = SessionContext::new();
        let df = store
            .events(&ctx, ProjectScope::for_tests(project), None, None)
            .await
            .unwrap();
        df.count().await.unwrap()
    }

    #[test]
    fn rows_are_grouped_by_day_and_sorted_by_event_then_time() {
        let p = ProjectId::new();
        // Two buffered batches, each spanning two days, events b, a, c in turn.
        let first = [events(p, 5, 0), events(p, 2, 1)].concat();
        let second = [events(p, 4, 1), events(p, 3, 0)].concat();
        let batches = vec![
            events_to_batch(&first).unwrap(),
            events_to_batch(&second).unwrap(),
        ];
        let days = sorted_days(&batches);
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].0, "2026-11-18");
        assert_eq!(days[1].0, "2026-11-19");
        assert_eq!((days[0].1.len(), days[1].1.len()), (8, 6));
        for (_, rows) in &days {
            let keys: Vec<(String, i64)> = rows
                .iter()
                .map(|&(b, r)| {
                    let events = batches[b]
                        .column_by_name("event")
                        .unwrap()
                        .as_string::<i32>();
                    (
                        events.value(r).to_string(),
                        timestamps(&batches[b]).value(r),
                    )
                })
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted);
        }
    }

    #[test]
    fn a_big_step_becomes_batches_holding_every_event_in_order() {
        let p = ProjectId::new();
        let cores = cores();
        for n in [
            1,
            PARALLEL_BATCH_ROWS - 1,
            PARALLEL_BATCH_ROWS,
            3 * PARALLEL_BATCH_ROWS + 7,
        ] {
            let step = events(p, n, 0);
            let batches = to_batches(&step).unwrap();
            let parallel = cores >= 2 && n >= PARALLEL_BATCH_ROWS;
            assert_eq!(batches.len() > 1, parallel, "{n} events");
            assert!(batches.len() <= cores.max(1));
            let ids: Vec<String> = batches
                .iter()
                .flat_map(|b| batch_to_events(b).unwrap())
                .map(|e| e.message_id)
                .collect();
            let sent: Vec<String> = step.iter().map(|e| e.message_id.clone()).collect();
            assert_eq!(ids, sent, "{n} events");
        }
    }

    #[tokio::test]
    async fn data_pages_hold_at_most_the_configured_rows() {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        use datafusion::parquet::file::serialized_reader::ReadOptionsBuilder;
        let dir = tempfile::tempdir().unwrap();
        let catalog = sqlite_catalog(dir.path()).await;
        let p = ProjectId::new();
        let store = EventStore::open(
            EventStoreConfig {
                page_rows: 2048,
                ..EventStoreConfig::new(dir.path().join("events"))
            },
            catalog.clone(),
        )
        .unwrap();
        store.append(events(p, 10_000, 0), 0).unwrap();
        store.flush().await.unwrap();
        let files = catalog
            .list_event_files(ProjectScope::for_tests(p))
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        let reader = SerializedFileReader::new_with_options(
            File::open(dir.path().join("events").join(&files[0].path)).unwrap(),
            ReadOptionsBuilder::new().with_page_index().build(),
        )
        .unwrap();
        let pages = reader.metadata().offset_index().expect("a page index");
        for (column, index) in pages[0].iter().enumerate() {
            let starts: Vec<i64> = index
                .page_locations()
                .iter()
                .map(|p| p.first_row_index)
                .chain([10_000])
                .collect();
            assert!(starts.len() >= 6, "column {column}: {starts:?}");
            for pair in starts.windows(2) {
                assert!(pair[1] - pair[0] <= 2048, "column {column}: {starts:?}");
            }
        }
    }

    #[tokio::test]
    async fn files_are_written_with_the_configured_codec_and_read_whatever_theirs() {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let catalog = sqlite_catalog(dir.path()).await;
        let p = ProjectId::new();
        let codecs = [
            (ParquetCompression::Zstd, "ZSTD"),
            (ParquetCompression::Lz4Raw, "LZ4_RAW"),
            (ParquetCompression::Snappy, "SNAPPY"),
        ];
        // Each codec for the other columns, and the next one for the key columns.
        let key = |i: usize| codecs[(i + 1) % codecs.len()];
        for (i, (codec, _)) in codecs.iter().enumerate() {
            let store = EventStore::open(
                EventStoreConfig {
                    compression: *codec,
                    key_compression: key(i).0,
                    ..EventStoreConfig::new(dir.path().join("events"))
                },
                catalog.clone(),
            )
            .unwrap();
            store.append(events(p, 10, i as i64), i as u64).unwrap();
            store.flush().await.unwrap();
            assert_eq!(count(&store, p).await, 10 * (i + 1), "every file is read");
        }
        let mut files = catalog
            .list_event_files(ProjectScope::for_tests(p))
            .await
            .unwrap();
        files.sort_by(|a, b| a.date.cmp(&b.date));
        for (i, (file, (_, name))) in files.iter().zip(codecs).enumerate() {
            let reader = SerializedFileReader::new(
                File::open(dir.path().join("events").join(&file.path)).unwrap(),
            )
            .unwrap();
            let row_group = reader.metadata().row_group(0);
            for column in row_group.columns() {
                let path = column.column_path().string();
                let want = if KEY_COLUMNS.contains(&path.as_str()) {
                    key(i).1
                } else {
                    name
                };
                let codec = column.compression();
                assert!(
                    codec.to_string().starts_with(want),
                    "{path}: {codec} for {want}"
                );
            }
        }
    }

    #[tokio::test]
    async fn buffered_events_are_queryable_then_flushed_to_partitioned_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = sqlite_catalog(dir.path()).await;
        let store = EventStore::open(
            EventStoreConfig::new(dir.path().join("events")),
            catalog.clone(),
        )
        .unwrap();
        let (a, b) = (ProjectId::new(), ProjectId::new());
        store.append(events(a, 10, 0), 3).unwrap();
        store.append(events(a, 5, 1), 4).unwrap();
        store.append(events(b, 7, 0), 5).unwrap();
        assert_eq!(count(&store, a).await, 15, "visible before any flush");
        assert_eq!(count(&store, b).await, 7);

        assert_eq!(store.flush().await.unwrap(), Some(5));
        assert_eq!(store.buffered_rows(), 0);
        assert_eq!(count(&store, a).await, 15, "visible after the flush");
        let files = catalog
            .list_event_files(ProjectScope::for_tests(a))
            .await
            .unwrap();
        assert_eq!(files.len(), 2, "one file per day");
        assert!(files
            .iter()
            .all(|f| f.path.starts_with(&format!("project={a}/date=2026-"))));
        assert_eq!(files.iter().map(|f| f.row_count).sum::<u64>(), 15);
        assert!(dir.path().join("events").join(&files[0].path).exists());
        assert_eq!(store.flushed_offset().await.unwrap(), Some(5));

        // More rows after the flush: files and buffer together, filtered by time.
        store.append(events(a, 3, 2), 6).unwrap();
        assert_eq!(count(&store, a).await, 18);
        let ctx = SessionContext::new();
        let day1 = DateTime::from_timestamp(1_795_000_000 + 86_400, 0).unwrap();
        let df = store
            .events(&ctx, ProjectScope::for_tests(a), Some(day1), None)
            .await
            .unwrap()
            .filter(col("timestamp").gt_eq(lit(
                datafusion::scalar::ScalarValue::TimestampMicrosecond(
                    Some(day1.timestamp_micros()),
                    Some("UTC".into()),
                ),
            )))
            .unwrap();
        assert_eq!(df.count().await.unwrap(), 8);
        assert_eq!(store.flush().await.unwrap(), Some(6));
        assert_eq!(store.flush().await.unwrap(), None, "nothing buffered");

        let mut recent = Vec::new();
        let seen = store
            .for_each_recent_event(DateTime::from_timestamp(0, 0).unwrap(), |e| {
                recent.push((e.project_id, e.message_id.to_string(), e.received_ms))
            })
            .await
            .unwrap();
        assert_eq!((seen, recent.len()), (25, 25));

        // A file without a catalog entry (a crash between the two) and a temporary file
        // are removed; catalogued files stay.
        let partition = dir.path().join("events").join(&files[0].path);
        let partition = partition.parent().unwrap();
        std::fs::write(partition.join("orphan.parquet"), b"x").unwrap();
        std::fs::write(partition.join("half.parquet.tmp"), b"x").unwrap();
        assert_eq!(store.remove_uncatalogued_files().await.unwrap(), 2);
        assert!(!partition.join("orphan.parquet").exists());
        assert_eq!(count(&store, a).await, 18);
        assert!(recent.contains(&(b, "m0-6".to_string(), (1_795_000_000 + 6) * 1000)));
    }

    #[tokio::test]
    async fn files_and_buffer_read_the_key_text_columns_as_views_with_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(
            EventStoreConfig::new(dir.path().join("events")),
            sqlite_catalog(dir.path()).await,
        )
        .unwrap();
        let p = ProjectId::new();
        let (stored, buffered) = (events(p, 6, 0), events(p, 4, 1));
        store.append(stored.clone(), 1).unwrap();
        store.flush().await.unwrap();
        store.append(buffered.clone(), 2).unwrap();

        let ctx = SessionContext::new();
        let df = store
            .events(&ctx, ProjectScope::for_tests(p), None, None)
            .await
            .unwrap();
        for name in VIEW_COLUMNS {
            let field = df.schema().field_with_unqualified_name(name).unwrap();
            assert_eq!(field.data_type(), &DataType::Utf8View, "{name}");
        }
        assert_eq!(
            df.schema()
                .field_with_unqualified_name("properties")
                .unwrap()
                .data_type(),
            &DataType::Utf8,
            "other text stays plain"
        );
        let mut read: Vec<(String, String, String)> = batch_to_events(
            &datafusion::arrow::compute::concat_batches(
                &df.schema().inner().clone(),
                &df.collect().await.unwrap(),
            )
            .unwrap(),
        )
        .unwrap()
        .into_iter()
        .map(|e| (e.message_id, e.event, e.distinct_id))
        .collect();
        read.sort();
        let mut expected: Vec<(String, String, String)> = stored
            .iter()
            .chain(&buffered)
            .map(|e| (e.message_id.clone(), e.event.clone(), e.distinct_id.clone()))
            .collect();
        expected.sort();
        assert_eq!(read, expected);
    }

    #[tokio::test]
    async fn the_buffer_says_when_to_flush_and_when_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = sqlite_catalog(dir.path()).await;
        let config = EventStoreConfig {
            flush_rows: 10,
            ..EventStoreConfig::new(dir.path().join("events"))
        };
        let store = EventStore::open(config, catalog).unwrap();
        let p = ProjectId::new();
        store.append(events(p, 9, 0), 0).unwrap();
        assert!(!store.should_flush() && !store.is_full());
        store.append(events(p, 10, 1), 1).unwrap();
        assert!(store.should_flush() && !store.is_full());
        store.append(events(p, 1, 2), 2).unwrap();
        assert!(store.is_full(), "twice the flush size");
        store.flush().await.unwrap();
        assert!(!store.should_flush() && !store.is_full());
    }

    #[tokio::test]
    async fn compaction_merges_small_files_of_a_day_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = compacting_store(dir.path()).await;
        let (a, b) = (ProjectId::new(), ProjectId::new());
        for round in 0..5u64 {
            let mut batch = events(a, 10, 0);
            for e in &mut batch {
                e.message_id = format!("{}-{round}", e.message_id);
            }
            store.append(batch, round).unwrap();
            store.append(events(b, 2, 0), round).unwrap();
            store.flush().await.unwrap();
        }
        assert_eq!(
            catalog
                .list_event_files(ProjectScope::for_tests(a))
                .await
                .unwrap()
                .len(),
            5
        );
        let done = store.compact().await.unwrap();
        assert_eq!(
            done,
            Compaction {
                files_in: 10,
                files_out: 2,
                rows: 60
            }
        );
        let files = catalog
            .list_event_files(ProjectScope::for_tests(a))
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].row_count, 50);
        assert_eq!(files[0].max_queue_offset, 4);
        assert_eq!(count(&store, a).await, 50);
        assert_eq!(count(&store, b).await, 10);
        // Only the merged files remain on disk.
        assert_eq!(store.remove_uncatalogued_files().await.unwrap(), 0);
        assert_eq!(walk_parquet(&dir.path().join("events")), 2);
        assert_eq!(
            store.compact().await.unwrap(),
            Compaction::default(),
            "nothing left to merge"
        );
    }

    /// Events per name from [`EventStore::counts`] over `[from, to)`.
    async fn counted(
        store: &EventStore,
        project: ProjectId,
        from: i64,
        to: i64,
    ) -> Option<BTreeMap<String, u64>> {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let counts = store
            .counts(ProjectScope::for_tests(project), at(from), at(to), None)
            .await
            .unwrap()?;
        let mut out = BTreeMap::new();
        for rollup in counts.files.iter().map(|r| &**r).chain([&counts.buffered]) {
            for name in ["a", "b", "c"] {
                *out.entry(name.to_string()).or_default() +=
                    rollup.slots(Some(name)).map(|(_, c)| c).sum::<u64>();
            }
        }
        Some(out)
    }

    #[tokio::test]
    async fn counts_come_from_the_files_rollups_and_the_buffer_through_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = compacting_store(dir.path()).await;
        let p = ProjectId::new();
        let day = 1_795_000_000 - 1_795_000_000 % 86_400;
        for round in 0..4u64 {
            let mut batch = events(p, 30, 0);
            for e in &mut batch {
                e.message_id = format!("{}-{round}", e.message_id);
            }
            store.append(batch, round).unwrap();
            store.flush().await.unwrap();
        }
        store.append(events(p, 6, 1), 4).unwrap();
        let want = |n: u64, m: u64| {
            BTreeMap::from([
                ("a".into(), n + m),
                ("b".into(), n + m),
                ("c".into(), n + m),
            ])
        };
        // 4 files of 30 events (10 per name), 6 buffered the next day (2 per name).
        assert_eq!(
            counted(&store, p, day, day + 2 * 86_400).await,
            Some(want(40, 2))
        );
        // A range without the buffered day still hands over the buffer (the caller
        // filters rows by time); files outside the range are left out.
        assert_eq!(
            counted(&store, p, day + 86_400, day + 2 * 86_400).await,
            Some(want(0, 2))
        );

        store.compact().await.unwrap();
        let files = catalog
            .list_event_files(ProjectScope::for_tests(p))
            .await
            .unwrap();
        assert_eq!(files.len(), 1, "compacted into one");
        assert_eq!(
            counted(&store, p, day, day + 2 * 86_400).await,
            Some(want(40, 2))
        );

        // A file without a rollup (an earlier version's) makes counting fall back.
        let path = dir.path().join("events").join(&files[0].path);
        let copy = std::fs::read(&path).unwrap();
        let batches: Vec<RecordBatch> =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                std::fs::File::open(&path).unwrap(),
                1024,
            )
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let fresh = EventStore::open(
            EventStoreConfig::new(dir.path().join("events")),
            catalog.clone(),
        )
        .unwrap();
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), event_schema(), None).unwrap();
        for b in &batches {
            writer.write(b).unwrap();
        }
        writer.close().unwrap();
        assert_eq!(counted(&fresh, p, day, day + 2 * 86_400).await, None);
        assert_eq!(
            count(&fresh, p).await,
            120,
            "the events are all there to scan"
        );
        std::fs::write(&path, copy).unwrap();
    }

    fn walk_parquet(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                if p.is_dir() {
                    walk_parquet(&p)
                } else {
                    usize::from(p.extension().is_some_and(|e| e == "parquet"))
                }
            })
            .sum()
    }
}
