//! What a node's workers show the API as they process events, whichever partitions
//! they hold at the moment: the live stream, the real-time counters, and how far each
//! partition is processed here.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use appizer_core::event::Event;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::counters::Counters;

/// See the module documentation.
pub struct Feed {
    live: broadcast::Sender<Arc<Event>>,
    counters: Counters,
    /// Per partition: one past the offset of the last record buffered (or dropped) here.
    processed: Vec<AtomicU64>,
    /// Partitions whose stored recent events the counters hold (counted once per node,
    /// however often its workers take the partition).
    counted: Mutex<HashSet<u32>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("partitions", &self.processed.len())
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// For a queue of `partitions`; a live subscriber may lag `live_buffer` events
    /// behind before it is dropped.
    pub fn new(partitions: u32, live_buffer: usize) -> Arc<Self> {
        let (live, _) = broadcast::channel(live_buffer.max(16));
        Arc::new(Self {
            live,
            counters: Counters::default(),
            processed: (0..partitions.max(1)).map(|_| AtomicU64::new(0)).collect(),
            counted: Mutex::default(),
        })
    }

    /// Events as they are stored here, for live streams. A receiver that lags more
    /// than the live buffer gets `Lagged` and should be closed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The sum over partitions of one past the offset of the last record whose events
    /// are buffered here (so visible to queries) or were dropped: it reaches
    /// [`Partitions::stats`](appizer_storage::queue::Partitions::stats)' `end` once
    /// everything appended is processed.
    pub fn processed_end(&self) -> u64 {
        self.processed
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .sum()
    }

    pub(crate) fn has_subscribers(&self) -> bool {
        self.live.receiver_count() > 0
    }

    pub(crate) fn publish(&self, event: Event) {
        let _ = self.live.send(Arc::new(event));
    }

    pub(crate) fn processed(&self, partition: u32, end: u64) {
        if let Some(p) = self.processed.get(partition as usize) {
            p.fetch_max(end, Ordering::AcqRel);
        }
    }

    /// Whether the partition's stored events still need counting (`true` once).
    pub(crate) fn first_count(&self, partition: u32) -> bool {
        self.counted.lock().insert(partition)
    }
}
