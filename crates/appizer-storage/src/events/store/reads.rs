//! Reads: one project's rows as of one moment (buffer, flushing slot, catalogued files
//! pruned by time), as a DataFrame or as the rollups a count adds up.

use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::cast;
use datafusion::prelude::{col, DataFrame, ParquetReadOptions, SessionContext};

use crate::events::rollup::Rollup;
use crate::events::schema::{event_schema, query_schema};
use crate::metadata::EventFile;

use crate::ProjectScope;

use super::{EventStore, EventStoreError};

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

/// Footers read at a time when a count meets files it has no rollup of yet.
const FOOTER_READS: usize = 16;

impl EventStore {
    /// The project's buffered batches (of this store and every lane beside it) and its
    /// catalogued files whose time range meets `[from, to)`, as of one moment: memory
    /// first, each store's buffer and flushing slot together (a flush moves rows from
    /// one to the other under the buffer lock); then the catalog. Rows of a flush that
    /// got catalogued in between are read from its files only.
    pub(super) async fn snapshot(
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
        let lanes: Vec<Arc<EventStore>> = self
            .lanes
            .read()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|lane| !std::ptr::eq(Arc::as_ptr(lane), self))
            .collect();
        let mut batches = Vec::new();
        let mut flushing = Vec::new();
        for store in std::iter::once(self).chain(lanes.iter().map(|l| l.as_ref())) {
            let buffer = store.buffer.read();
            if let Some((offset, projects)) = store.flushing.read().as_ref() {
                let held = projects.get(&project).map(|p| p.batches.clone());
                flushing.push((store.fence.partition, *offset, held.unwrap_or_default()));
            }
            if let Some(own) = buffer.projects.get(&project) {
                batches.extend(own.batches.iter().cloned());
            }
        }
        let catalogued = self.catalog.list_event_files(scope).await?;
        for (partition, offset, held) in flushing {
            let written = catalogued
                .iter()
                .any(|f| f.partition == partition && f.max_queue_offset >= offset);
            if !written {
                batches.extend(held);
            }
        }
        let files: Vec<EventFile> = catalogued
            .into_iter()
            .filter(|f| f.max_timestamp >= from_ms && f.min_timestamp <= to_ms)
            .collect();
        self.files.catalogued(&files);
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
            .map(|f| self.files.table_path(f))
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
        self.files.register(ctx);
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
            use futures_util::{StreamExt, TryStreamExt};
            // Footers read several at a time (each a request on an object store).
            let read: Vec<(String, Option<Arc<Rollup>>)> = futures_util::stream::iter(missing)
                .map(|f| async move {
                    let rollup = self.files.rollup(&f.path, f.byte_size).await?;
                    let rollup = rollup.filter(|r| r.total() == f.row_count).map(Arc::new);
                    Ok::<_, EventStoreError>((f.path, rollup))
                })
                .buffered(FOOTER_READS)
                .try_collect()
                .await?;
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
