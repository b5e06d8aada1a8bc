//! The Arrow buffer of recent events: appended by the workers, queryable at once, taken
//! for a flush and given back when one fails.

use std::collections::BTreeMap;
use std::time::Instant;

use appizer_core::event::Event;
use appizer_core::ProjectId;
use datafusion::arrow::array::RecordBatch;

use crate::events::schema::events_to_batch;

use crate::background::{cores, split_across_threads};

use super::{EventStore, EventStoreError};

/// Rows taken from the buffer for a flush, up to a queue offset.
#[derive(Debug)]
pub struct Taken {
    pub(super) projects: BTreeMap<ProjectId, ProjectBuffer>,
    pub(super) max_offset: u64,
}

impl Taken {
    /// The highest queue offset whose events the rows hold.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }
}

/// Buffered batches of one project.
#[derive(Debug, Default, Clone)]
pub(super) struct ProjectBuffer {
    pub(super) batches: Vec<RecordBatch>,
}

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) projects: BTreeMap<ProjectId, ProjectBuffer>,
    pub(super) rows: usize,
    pub(super) oldest: Option<Instant>,
    /// Highest queue offset whose events are buffered.
    pub(super) max_offset: Option<u64>,
}

/// Below this many events a step's rows become one batch on the calling thread:
/// starting threads would cost more than they save.
pub(super) const PARALLEL_BATCH_ROWS: usize = 4 * 1024;

/// `events` as Arrow batches in their order, built on every core for a big step (the
/// conversion reads each event's context JSON; on one thread it held back the workers
/// once the gateway left them both cores).
pub(super) fn to_batches(events: &[Event]) -> Result<Vec<RecordBatch>, EventStoreError> {
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

    /// Puts batches whose flush failed back in front of the buffer.
    pub(super) fn restore(&self, projects: BTreeMap<ProjectId, ProjectBuffer>, max_offset: u64) {
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
}
