//! [`EventStore`]: the store of one node's events, by concept:
//! - lanes: a store writes one queue partition's files, under that partition's fence
//!   ([`EventStore::lane`] makes a store for another partition beside it); queries on
//!   any of them read every catalogued file and the buffers of all of them;
//! - `buffer`: the Arrow buffer of recent events, queryable at once;
//! - `flush`: writing the buffer to sorted Parquet files and cataloguing them;
//! - `compaction`: merging small files and folding person changes into old ones;
//! - `retire`: deleting the files compaction replaced, after a grace period;
//! - `recovery`: what a start needs (stray files, the flushed offset, recent events);
//! - `reads`: the project's rows as of one moment, for queries and counts (with the
//!   cache of each file's rollup).

mod buffer;
mod compaction;
mod flush;
mod reads;
mod recovery;
mod retire;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use appizer_core::config::ParquetCompression;
use appizer_core::ProjectId;
use datafusion::error::DataFusionError;
use parking_lot::RwLock;

use super::files::{FileBackend, FilesLocation};
use super::rollup::Rollup;
use crate::background::Background;
use crate::leases::Fence;
use crate::metadata::MetadataStore;
use crate::StoreError;

pub use buffer::Taken;
use buffer::{Buffer, ProjectBuffer};
pub use compaction::Compaction;
pub use reads::{Counts, Unrolled};
pub use recovery::RecentEvent;

#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    /// Where the Parquet files live.
    pub location: FilesLocation,
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
    /// Files in the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::at(FilesLocation::Dir(root.into()))
    }

    pub fn at(location: FilesLocation) -> Self {
        Self {
            location,
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
    #[error("event file storage error: {0}")]
    Object(#[from] object_store::Error),
    #[error(transparent)]
    Catalog(#[from] StoreError),
}

/// The event store; see the module docs.
pub struct EventStore {
    config: EventStoreConfig,
    files: Arc<dyn FileBackend>,
    catalog: Arc<dyn MetadataStore>,
    /// The partition whose events this store buffers and writes, and the lease held
    /// on it: every catalog write of this store goes under it.
    fence: Fence,
    /// The other stores of this node ([`EventStore::lane`]), whose buffers queries
    /// read too.
    lanes: Arc<RwLock<Vec<Weak<EventStore>>>>,
    /// Events not yet in Parquet. During a flush, the batches being written stay in
    /// `flushing` (still queried) until their catalog entries exist.
    buffer: RwLock<Buffer>,
    /// With the highest queue offset they hold: once a catalogued file carries that
    /// offset, they are in the files and a query must not read them twice.
    flushing: RwLock<Option<(u64, BTreeMap<ProjectId, ProjectBuffer>)>>,
    flush_lock: tokio::sync::Mutex<()>,
    compact_lock: tokio::sync::Mutex<()>,
    /// Files compaction replaced (paths under the root), with when, awaiting deletion
    /// by a later pass.
    retired: parking_lot::Mutex<Vec<(Instant, String)>>,
    /// Bumped after every change of what a query reads (see [`EventStore::version`]);
    /// one for every lane.
    version: Arc<std::sync::atomic::AtomicU64>,
    /// The rollups of files read so far, by path (`None`: the file has none). Files
    /// never change once written, so an entry stays true while its file is catalogued.
    rollups: Arc<Rollups>,
}

type Rollups = parking_lot::Mutex<std::collections::HashMap<String, Option<Arc<Rollup>>>>;

impl Drop for EventStore {
    fn drop(&mut self) {
        // A lane's buffered rows leave the node's reads (its workers gave the partition
        // up; its next holder replays them).
        if self.buffer.get_mut().rows > 0 {
            self.version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl EventStore {
    pub fn open(
        config: EventStoreConfig,
        catalog: Arc<dyn MetadataStore>,
    ) -> Result<Self, EventStoreError> {
        Ok(Self {
            files: config.location.open()?,
            config,
            catalog,
            fence: Fence::unleased(0),
            lanes: Arc::default(),
            buffer: RwLock::new(Buffer::default()),
            flushing: RwLock::new(None),
            flush_lock: tokio::sync::Mutex::new(()),
            compact_lock: tokio::sync::Mutex::new(()),
            retired: parking_lot::Mutex::new(Vec::new()),
            version: Arc::default(),
            rollups: Arc::default(),
        })
    }

    /// A store beside this one for the fence's partition (the workers of a partition
    /// while they hold its lease): its own buffer, flushes and compaction, all under
    /// the fence; queries through either read both buffers. It leaves the node's reads
    /// when dropped.
    pub fn lane(&self, fence: Fence) -> Arc<EventStore> {
        let lane = Arc::new(Self {
            config: self.config.clone(),
            files: self.files.clone(),
            catalog: self.catalog.clone(),
            fence,
            lanes: self.lanes.clone(),
            buffer: RwLock::new(Buffer::default()),
            flushing: RwLock::new(None),
            flush_lock: tokio::sync::Mutex::new(()),
            compact_lock: tokio::sync::Mutex::new(()),
            retired: parking_lot::Mutex::new(Vec::new()),
            version: self.version.clone(),
            rollups: self.rollups.clone(),
        });
        let mut lanes = self.lanes.write();
        lanes.retain(|l| l.strong_count() > 0);
        lanes.push(Arc::downgrade(&lane));
        lane
    }

    /// The partition this store writes, and the lease it writes under.
    pub fn fence(&self) -> Fence {
        self.fence
    }

    /// Whether a catalogued file is this store's partition's.
    fn owns(&self, file: &crate::metadata::EventFile) -> bool {
        file.partition == self.fence.partition
    }

    /// A number that changes whenever events are added. Flushes and compaction move
    /// rows without changing what a query answers (merges and deletions they fold in
    /// are already applied by every query), so they leave it as it is.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }
}
