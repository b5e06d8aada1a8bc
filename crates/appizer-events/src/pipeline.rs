//! The ingestion workers: read batches from the durable queue, enrich, drop duplicates,
//! buffer in the event store, publish to live subscribers and counters, and flush.
//! A queue offset is committed only after the events below it are in catalogued
//! Parquet files; after a crash the workers resume after the last catalogued offset,
//! so each acknowledged event is stored exactly once.

use std::sync::Arc;
use std::time::Duration;

use appizer_core::event::Event;
use appizer_storage::events::EventStore;
use appizer_storage::queue::{EventQueue, QueueError};
use chrono::Utc;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;
use crate::dedup::Dedup;
use crate::enrich::UserAgents;
use crate::geoip::GeoIp;
use crate::metrics as m;

/// Serializes the events of one accepted request into a queue record.
pub fn encode_record(events: &[Event]) -> Vec<u8> {
    serde_json::to_vec(events).expect("events serialize")
}

/// The events of a queue record.
pub fn decode_record(payload: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Queue records read per step.
    pub batch_records: usize,
    /// Duplicate message ids are dropped within this window (at least 24 h).
    pub dedup_window: Duration,
    /// Events a live subscriber may lag behind before it is dropped.
    pub live_buffer: usize,
    /// Location from the client IP, when a MaxMind City database is configured.
    pub geoip: Option<Arc<GeoIp>>,
    /// How often small Parquet files are compacted.
    pub compaction_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_records: 64,
            dedup_window: Duration::from_secs(24 * 3600),
            live_buffer: 4_096,
            geoip: None,
            compaction_interval: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] appizer_storage::events::EventStoreError),
}

/// The workers' shared state: what the API reads (live stream, counters) lives here.
pub struct Pipeline {
    queue: Arc<dyn EventQueue>,
    store: Arc<EventStore>,
    config: PipelineConfig,
    /// Worker-side state: the duplicate window and the user-agent cache.
    work: Mutex<(Dedup, UserAgents)>,
    live: broadcast::Sender<Arc<Event>>,
    counters: Counters,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Prepares the workers, rebuilding the duplicate window from the stored files.
    pub async fn new(
        queue: Arc<dyn EventQueue>,
        store: Arc<EventStore>,
        config: PipelineConfig,
    ) -> Result<Arc<Self>, PipelineError> {
        let removed = store.remove_uncatalogued_files().await?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed uncatalogued event files left by an interrupted flush"
            );
        }
        let mut dedup = Dedup::new(config.dedup_window);
        let since =
            Utc::now() - chrono::Duration::from_std(config.dedup_window).unwrap_or_default();
        for (project, message_id, received_ms) in store.recent_message_ids(since).await? {
            dedup.first_sighting(project, &message_id, received_ms);
        }
        let (live, _) = broadcast::channel(config.live_buffer.max(16));
        Ok(Arc::new(Self {
            queue,
            store,
            work: Mutex::new((dedup, UserAgents::default())),
            live,
            counters: Counters::default(),
            config,
        }))
    }

    /// Events as they are stored, for live streams. A receiver that lags more than the
    /// live buffer gets `Lagged` and should be closed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// Consumes the queue until `shutdown`, then flushes what is buffered.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let flushed = self.store.flushed_offset().await?;
        let start = self
            .queue
            .stats()
            .committed
            .max(flushed.map_or(0, |o| o + 1));
        let mut reader = self.queue.reader(start)?;
        // Stopped when this run ends, however it ends.
        let _compaction = AbortOnDrop(tokio::spawn(compact_periodically(
            self.store.clone(),
            self.config.compaction_interval,
            shutdown.clone(),
        )));
        let mut last_prune = std::time::Instant::now();
        loop {
            let records = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = reader.next_batch(self.config.batch_records, Duration::from_millis(100)) => r?,
            };
            for record in records {
                self.process(record.offset, &record.payload)?;
            }
            if self.store.should_flush() {
                self.flush_and_commit().await;
            }
            let stats = self.queue.stats();
            metrics::gauge!(m::QUEUE_DEPTH_RECORDS).set(stats.depth() as f64);
            metrics::gauge!(m::QUEUE_DISK_BYTES).set(stats.disk_bytes as f64);
            metrics::gauge!(m::BUFFERED_EVENTS).set(self.store.buffered_rows() as f64);
            if last_prune.elapsed() > Duration::from_secs(60) {
                self.counters.prune(Utc::now().timestamp_millis());
                last_prune = std::time::Instant::now();
            }
        }
        self.flush_and_commit().await;
        Ok(())
    }

    fn process(&self, offset: u64, payload: &[u8]) -> Result<(), PipelineError> {
        let events = match decode_record(payload) {
            Ok(events) => events,
            Err(e) => {
                // Written by this server, checksummed: only a bug gets here. Skip it
                // rather than stall every later event.
                tracing::error!(offset, error = %e, "undecodable queue record skipped");
                metrics::counter!(m::EVENTS_DROPPED_TOTAL, "reason" => "undecodable").increment(1);
                self.store.note_offset(offset);
                return Ok(());
            }
        };
        let mut kept = Vec::with_capacity(events.len());
        {
            let mut work = self.work.lock();
            let (dedup, user_agents) = &mut *work;
            for mut event in events {
                if !dedup.first_sighting(
                    event.project_id,
                    &event.message_id,
                    event.received_at.timestamp_millis(),
                ) {
                    metrics::counter!(m::EVENTS_DROPPED_TOTAL, "reason" => "duplicate")
                        .increment(1);
                    continue;
                }
                user_agents.enrich(&mut event);
                if let Some(geoip) = &self.config.geoip {
                    geoip.enrich(&mut event);
                }
                kept.push(event);
            }
        }
        if kept.is_empty() {
            self.store.note_offset(offset);
            return Ok(());
        }
        metrics::counter!(m::EVENTS_STORED_TOTAL).increment(kept.len() as u64);
        for event in &kept {
            self.counters.record(
                event.project_id,
                &event.event,
                event.timestamp.timestamp_millis(),
            );
            if self.live.receiver_count() > 0 {
                let _ = self.live.send(Arc::new(event.clone()));
            }
        }
        self.store.append(kept, offset)?;
        Ok(())
    }

    async fn flush_and_commit(&self) {
        match self.store.flush().await {
            Ok(Some(offset)) => {
                if let Err(e) = self.queue.commit(offset + 1).await {
                    tracing::warn!(offset, error = %e, "queue commit failed; will retry with the next flush");
                }
            }
            Ok(None) => {}
            Err(e) => {
                metrics::counter!(m::FLUSH_FAILURES_TOTAL).increment(1);
                tracing::error!(error = %e, "event flush failed; events stay buffered and are retried");
            }
        }
    }
}

/// Compacts small files every `interval` until `shutdown`.
async fn compact_periodically(
    store: Arc<EventStore>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match store.compact().await {
            Ok(done) if done.files_in > 0 => tracing::info!(
                files_in = done.files_in,
                files_out = done.files_out,
                rows = done.rows,
                "compacted event files"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "event file compaction failed; retried next time"),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
