//! The ingestion workers of one queue partition: read batches from the partition,
//! enrich, drop duplicates, buffer in the partition's lane of the event store, publish
//! to live subscribers and counters ([`Feed`]), and flush. A queue offset is committed
//! only after the events below it are in catalogued Parquet files; after a crash the
//! workers resume after the partition's last catalogued offset, so each acknowledged
//! event is stored exactly once. Every flush and person update goes under the lane's
//! fence: once the partition's lease has passed to another worker, they are refused
//! and this pipeline stops ([`PipelineError::LeaseLost`]) without writing anything.
//!
//! The workers run as two tasks: one reads and decodes the queue a step ahead
//! ([`Pipeline::read_ahead`]: nothing is marked seen there; after a short step it
//! lingers `step_linger` for more records; each event's context is read there once,
//! `Event::remember_context`, for person updates and the Arrow columns), the other
//! drops duplicates, resolves persons, buffers (a big step's Arrow batches built on
//! every core) and starts flushes. Decoding, enrichment, Parquet writing and
//! compaction run on `appizer-storage::background` threads at a lower priority than
//! request handling (on Linux `SCHED_IDLE` by default, `ingest.worker_sched_idle`;
//! niceness `ingest.worker_nice`). The consumer, the flush and compaction report each
//! pass to the health registry ([`PIPELINE`], [`FLUSH`], [`COMPACTION`]).

use std::sync::Arc;
use std::time::Duration;

use appizer_core::event::Event;
use appizer_core::health::{HealthRegistry, HealthReporter, Policy};
use appizer_storage::background::{cores, split_across_threads, Background};
use appizer_storage::events::{EventStore, EventStoreError, Taken};
use appizer_storage::persons::Applied;
use appizer_storage::queue::{EventQueue, QueueError, QueueReader, Record};
use appizer_storage::StoreError;
use appizer_users::Identity;
use chrono::Utc;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::counters::first_kept_minute;
use crate::dedup::Dedup;
use crate::enrich::UserAgents;
use crate::feed::Feed;
use crate::geoip::GeoIp;
use crate::metrics as m;
use crate::record::decode_record;
use crate::warnings::WarningSink;

/// A step whose records hold less than this is decoded on one thread: starting the
/// lanes costs more than they save (a step of single-event requests).
const PARALLEL_DECODE_BYTES: usize = 256 * 1024;

/// A step of queue records, decoded and enriched (`None` for a record that cannot be
/// decoded), in record order.
type Prepared = Vec<(u64, Option<Vec<Event>>)>;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Queue records read per step.
    pub batch_records: usize,
    /// After a step shorter than `batch_records`, the next read waits this long for
    /// more records: under a trickle of small requests, steps of a few records each
    /// would cost the workers' fixed costs per step (thread hand-offs) thousands of
    /// times a second. It adds at most this much to an event's time to visibility.
    pub step_linger: Duration,
    /// Duplicate message ids are dropped within this window (at least 24 h).
    pub dedup_window: Duration,
    /// Where processed events are shown: live stream, counters, progress (one for
    /// every partition of a node).
    pub feed: Arc<Feed>,
    /// Location from the client IP, when a MaxMind City database is configured.
    pub geoip: Option<Arc<GeoIp>>,
    /// How often small Parquet files are compacted.
    pub compaction_interval: Duration,
    /// Where records are decoded, enriched and buffered (CPU-heavy work that can wait
    /// while the gateway is busy).
    pub background: Background,
    /// Identity resolution and person updates; without it events get no person.
    pub identity: Option<Arc<Identity>>,
    /// Where warnings about events' ids go.
    pub warnings: Option<WarningSink>,
    /// Where the workers, the flush and compaction report each pass
    /// ([`PIPELINE`], [`FLUSH`], [`COMPACTION`]).
    pub health: HealthRegistry,
    /// Sees every event as it is processed (campaign triggers).
    pub tap: Option<Arc<dyn EventTap>>,
}

/// Sees each step's events as they are processed, identity resolved, before they are
/// buffered: a replay after a crash offers them again, so what a tap records must be
/// keyed by the event's message id.
///
/// A flush waits for the tap to settle the events it writes: once they are in the
/// files a restart no longer replays them, so whatever the tap makes of them must be
/// durable first (a campaign trigger recorded), or it would be lost.
pub trait EventTap: Send + Sync + std::fmt::Debug {
    /// `end`: one past the queue offset of the last record these events come from.
    /// Must not block the worker.
    fn offer(&self, events: &[Event], end: u64);

    /// Resolves once what the tap took from records below `end` is durable.
    fn settled(
        &self,
        end: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// How long a flush waits for the tap to settle before it writes anyway (logged and
/// counted in `appizer_ingest_tap_unsettled_flushes_total`): a stuck tap must not stop
/// ingestion.
pub const TAP_SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The health components of the ingestion workers.
pub const PIPELINE: &str = "pipeline";
pub const FLUSH: &str = "flush";
pub const COMPACTION: &str = "compaction";

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_records: 64,
            step_linger: Duration::from_millis(10),
            dedup_window: Duration::from_secs(24 * 3600),
            feed: Feed::new(1, 4_096),
            geoip: None,
            compaction_interval: Duration::from_secs(300),
            background: Background::blocking(),
            identity: None,
            warnings: None,
            health: HealthRegistry::default(),
            tap: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] appizer_storage::events::EventStoreError),
    #[error(transparent)]
    Persons(#[from] appizer_storage::StoreError),
    /// The partition's lease passed to another worker: a write was refused.
    #[error("the lease of partition {0} was lost")]
    LeaseLost(u32),
}

/// The workers' shared state: what the API reads (live stream, counters) lives here.
pub struct Pipeline {
    queue: Arc<dyn EventQueue>,
    store: Arc<EventStore>,
    config: PipelineConfig,
    /// The duplicate window, consulted in record order.
    dedup: Mutex<Dedup>,
    /// One user-agent cache per decoding lane (a lane per core).
    agents: Vec<Mutex<UserAgents>>,
    /// Cancelled when a write was refused under the lane's fence.
    lost: CancellationToken,
    health: WorkerHealth,
    /// When the next flush may start after failed ones (storage down): the rows wait
    /// in the buffer, and past its limit in the queue.
    flush_retry: Mutex<Backoff>,
}

/// Failed attempts in a row, and when the next may start: 250 ms after the first
/// failure, twice as long after each further one, at most 10 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next: Option<std::time::Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(10);

    fn failed(&mut self) {
        let wait = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures += 1;
        self.next = Some(std::time::Instant::now() + wait);
    }

    fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// How long until the next attempt may start.
    fn wait(&self) -> Duration {
        self.next.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(std::time::Instant::now())
        })
    }
}

/// The reporters of the workers' loops.
struct WorkerHealth {
    /// Each step consumed, each failed person resolution and each failed run. An idle
    /// step passes every 100 ms, so a minute without a report is a hung loop.
    pipeline: HealthReporter,
    flush: HealthReporter,
    compaction: HealthReporter,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Prepares the workers of the partition `store` writes (its lane), collecting its
    /// stray files and rebuilding the duplicate window from its stored files (and the
    /// node's counters, the first time this node takes the partition).
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
        let count = config.feed.first_count(store.fence().partition);
        // One pass over the stored events of the duplicate window (at least the counters'
        // 24 hours) rebuilds both: events in files were counted once before a restart,
        // and a replayed record of one of them is now a duplicate.
        let mut dedup = Dedup::new(config.dedup_window);
        let counters = config.feed.counters();
        let since =
            Utc::now() - chrono::Duration::from_std(config.dedup_window).unwrap_or_default();
        let counted_from = first_kept_minute(Utc::now().timestamp_millis());
        store
            .for_each_recent_event(since, |e| {
                dedup.first_sighting(e.project_id, e.message_id, e.received_ms);
                if count && e.timestamp_ms.div_euclid(60_000) >= counted_from {
                    counters.record(e.project_id, e.event, e.timestamp_ms);
                }
            })
            .await?;
        let registry = config.health.clone();
        Ok(Self::assemble(queue, store, config, dedup, &registry))
    }

    fn assemble(
        queue: Arc<dyn EventQueue>,
        store: Arc<EventStore>,
        config: PipelineConfig,
        dedup: Dedup,
        registry: &appizer_core::health::HealthRegistry,
    ) -> Arc<Self> {
        let health = WorkerHealth {
            pipeline: registry.register(
                PIPELINE,
                Policy {
                    stale_after: Some(Duration::from_secs(60)),
                    ..Policy::default()
                },
            ),
            flush: registry.register(FLUSH, Policy::default()),
            compaction: registry.register(COMPACTION, Policy::default()),
        };
        Arc::new(Self {
            health,
            queue,
            store,
            dedup: Mutex::new(dedup),
            agents: (0..cores().clamp(1, 8))
                .map(|_| Mutex::new(UserAgents::default()))
                .collect(),
            lost: CancellationToken::new(),
            flush_retry: Mutex::default(),
            config,
        })
    }

    /// Where this pipeline shows what it processes.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.config.feed
    }

    /// The partition these workers consume.
    pub fn partition(&self) -> u32 {
        self.store.fence().partition
    }

    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// Consumes the queue until `shutdown`, then flushes what is buffered. A failed run
    /// is reported to the health registry.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let reporter = self.health.pipeline.clone();
        match self.consume(shutdown).await {
            Err(e) => {
                reporter.failed(&e);
                Err(e)
            }
            done => done,
        }
    }

    async fn consume(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let flushed = self.store.flushed_offset().await?;
        let start = self
            .queue
            .stats()
            .committed
            .max(flushed.map_or(0, |o| o + 1));
        let reader = self.queue.reader(start)?;
        // Person updates of records up to here are in the person store already.
        let applied = match &self.config.identity {
            Some(identity) => identity.store().applied_offset(self.partition()).await?,
            None => None,
        };
        // Stopped when this run ends, however it ends.
        let _compaction = AbortOnDrop(tokio::spawn(compact_periodically(
            self.store.clone(),
            self.config.compaction_interval,
            self.health.compaction.clone(),
            shutdown.clone(),
        )));
        let (mut steps, reading) = self.clone().read_ahead(reader);
        let mut reading = AbortOnDrop(reading);
        let mut last_prune = std::time::Instant::now();
        let mut flushing: Option<tokio::task::JoinHandle<()>> = None;
        'consume: loop {
            // Back-pressure: the queue holds the rest durably meanwhile. A full buffer
            // whose flushes fail (storage down) is flushed here once each backoff is
            // over, and nothing more is read until it is no longer full.
            while self.store.is_full() {
                if let Some(f) = flushing.take() {
                    let _ = f.await;
                    continue;
                }
                let wait = self.flush_retry.lock().wait();
                tokio::select! {
                    _ = shutdown.cancelled() => break 'consume,
                    _ = self.lost.cancelled() => break 'consume,
                    _ = tokio::time::sleep(wait) => {}
                }
                self.health.pipeline.ok();
                let taken = self.take_for_flush();
                self.flush_and_commit(taken).await;
            }
            let prepared = tokio::select! {
                _ = shutdown.cancelled() => break 'consume,
                _ = self.lost.cancelled() => break 'consume,
                step = steps.recv() => match step {
                    Some(step) => step?,
                    // The reading task panicked: resume its panic here.
                    None => match (&mut reading.0).await {
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        _ => return Err(QueueError::Closed.into()),
                    },
                },
            };
            let pipeline = self.clone();
            let mut screened = self
                .config
                .background
                .run(move || pipeline.screen(prepared))
                .await;
            if let Some(identity) = &self.config.identity {
                if !self
                    .resolve(identity, &mut screened, applied, &shutdown)
                    .await
                {
                    // Shutting down: these records were not buffered, so the queue offset
                    // stays below them and they are read again at the next start.
                    break 'consume;
                }
            }
            let pipeline = self.clone();
            self.config
                .background
                .run(move || pipeline.process(screened))
                .await?;
            // Flushes run beside the consumer, one at a time: writing Parquet takes long
            // enough that waiting for it would stall every later event.
            let idle = flushing
                .as_ref()
                .is_none_or(|f: &tokio::task::JoinHandle<()>| f.is_finished());
            let due = self.flush_retry.lock().wait().is_zero();
            if idle && due && self.store.should_flush() {
                let pipeline = self.clone();
                let taken = self.take_for_flush();
                flushing = Some(tokio::spawn(async move {
                    pipeline.flush_and_commit(taken).await
                }));
            }
            let stats = self.queue.stats();
            metrics::gauge!(m::QUEUE_DEPTH_RECORDS).set(stats.depth() as f64);
            metrics::gauge!(m::QUEUE_DISK_BYTES).set(stats.disk_bytes as f64);
            metrics::gauge!(m::BUFFERED_EVENTS).set(self.store.buffered_rows() as f64);
            {
                let dedup = self.dedup.lock();
                metrics::gauge!(m::DEDUP_IDS).set(dedup.len() as f64);
                metrics::gauge!(m::DEDUP_TABLE_BYTES).set(dedup.table_bytes() as f64);
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                self.config
                    .feed
                    .counters()
                    .prune(Utc::now().timestamp_millis());
                last_prune = std::time::Instant::now();
            }
            self.health.pipeline.ok();
        }
        if let Some(f) = flushing {
            let _ = f.await;
        }
        if !self.lost.is_cancelled() {
            let taken = self.take_for_flush();
            self.flush_and_commit(taken).await;
        }
        if self.lost.is_cancelled() {
            return Err(PipelineError::LeaseLost(self.partition()));
        }
        Ok(())
    }

    /// Reads and decodes the queue one step ahead of the consumer, which drops
    /// duplicates, resolves persons and buffers: on 2 cores the two halves overlap
    /// instead of each waiting for the other. A step is read only once the last one
    /// has been taken, so one decoded step at most waits in memory. Nothing is marked
    /// seen or buffered here, so a step read but not consumed when the run ends is
    /// simply read again at the next start. An error is the last step sent.
    fn read_ahead(
        self: Arc<Self>,
        mut reader: Box<dyn QueueReader>,
    ) -> (mpsc::Receiver<Result<Prepared, QueueError>>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = tx.reserve().await else { return };
                let mut linger = false;
                let step = match reader
                    .next_batch(self.config.batch_records, Duration::from_millis(100))
                    .await
                {
                    Ok(records) => {
                        linger = !records.is_empty() && records.len() < self.config.batch_records;
                        let pipeline = self.clone();
                        Ok(self
                            .config
                            .background
                            .run(move || pipeline.prepare(&records))
                            .await)
                    }
                    Err(e) => Err(e),
                };
                let failed = step.is_err();
                slot.send(step);
                if failed {
                    return;
                }
                if linger {
                    tokio::time::sleep(self.config.step_linger).await;
                }
            }
        });
        (rx, task)
    }

    /// Decodes and enriches records, one lane per core; results in record order
    /// (`None` for a record that cannot be decoded).
    fn prepare(&self, records: &[Record]) -> Prepared {
        let lanes = self.agents.len();
        let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
        if lanes < 2 || records.len() < 2 || bytes < PARALLEL_DECODE_BYTES {
            return records
                .iter()
                .map(|r| (r.offset, self.prepare_one(0, r)))
                .collect();
        }
        split_across_threads(records, records.len().div_ceil(lanes), |lane, part| {
            part.iter()
                .map(|r| (r.offset, self.prepare_one(lane, r)))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect()
    }

    fn prepare_one(&self, lane: usize, record: &Record) -> Option<Vec<Event>> {
        let mut events = match decode_record(&record.payload) {
            Ok(events) => events,
            Err(e) => {
                // Written by this server, checksummed: only a bug gets here. Skip it
                // rather than stall every later event.
                tracing::error!(offset = record.offset, error = %e, "undecodable queue record skipped");
                metrics::counter!(m::EVENTS_DROPPED_TOTAL, "reason" => "undecodable").increment(1);
                return None;
            }
        };
        let mut agents = self.agents[lane].lock();
        for event in &mut events {
            agents.enrich(event);
            if let Some(geoip) = &self.config.geoip {
                geoip.enrich(event);
            }
            // Read here, on every core, rather than by the consumer (person updates,
            // Arrow columns).
            event.remember_context();
        }
        Some(events)
    }

    /// Drops duplicates, in record order.
    fn screen(&self, records: Prepared) -> Prepared {
        let mut dedup = self.dedup.lock();
        records
            .into_iter()
            .map(|(offset, events)| {
                let kept = events.map(|events| {
                    events
                        .into_iter()
                        .filter(|event| {
                            let first = dedup.first_sighting(
                                event.project_id,
                                &event.message_id,
                                event.received_at.timestamp_millis(),
                            );
                            if !first {
                                metrics::counter!(m::EVENTS_DROPPED_TOTAL, "reason" => "duplicate")
                                    .increment(1);
                            }
                            first
                        })
                        .collect::<Vec<_>>()
                });
                (offset, kept)
            })
            .collect()
    }

    /// Resolves persons, retrying while the person store is unreachable (the records
    /// wait in memory; the queue holds everything after them). `false` if shutdown
    /// came first.
    async fn resolve(
        &self,
        identity: &Identity,
        records: &mut [(u64, Option<Vec<Event>>)],
        applied: Option<u64>,
        shutdown: &CancellationToken,
    ) -> bool {
        loop {
            match identity.resolve(records, applied).await {
                Ok(resolution) => {
                    if resolution.suppressed > 0 {
                        metrics::counter!(m::EVENTS_DROPPED_TOTAL, "reason" => "suppressed")
                            .increment(resolution.suppressed);
                    }
                    metrics::counter!(m::PERSON_MERGES_TOTAL).increment(resolution.merges);
                    if let Some(sink) = &self.config.warnings {
                        sink.record_identity(resolution.warnings).await;
                    }
                    let cache = identity.cache_stats();
                    metrics::gauge!(m::IDENTITY_CACHE_IDS).set(cache.entries as f64);
                    metrics::gauge!(m::IDENTITY_CACHE_BYTES).set(cache.bytes as f64);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "identity resolution failed; retrying in 1 s");
                    self.health.pipeline.failed(&e);
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Buffers, counts and publishes the events of one step's records, as one batch
    /// per project: a step of many small records (single-event requests) would
    /// otherwise leave a batch per record in the buffer for every query and flush to
    /// go through.
    fn process(&self, records: Prepared) -> Result<(), PipelineError> {
        let Some(last) = records.last().map(|(offset, _)| *offset) else {
            return Ok(());
        };
        let kept: Vec<Event> = records
            .into_iter()
            .flat_map(|(_, events)| events.unwrap_or_default())
            .collect();
        if kept.is_empty() {
            self.store.note_offset(last);
        } else {
            metrics::counter!(m::EVENTS_STORED_TOTAL).increment(kept.len() as u64);
            let feed = &self.config.feed;
            let live = feed.has_subscribers();
            for event in &kept {
                feed.counters().record(
                    event.project_id,
                    &event.event,
                    event.timestamp.timestamp_millis(),
                );
                if live {
                    feed.publish(event.clone());
                }
            }
            if let Some(tap) = &self.config.tap {
                tap.offer(&kept, last + 1);
            }
            self.store.append(kept, last)?;
        }
        self.config.feed.processed(self.partition(), last + 1);
        Ok(())
    }

    /// Takes the buffer and the person updates of the same events, together; with
    /// the number of persons updated.
    fn take_for_flush(&self) -> Option<(Taken, usize)> {
        let taken = self.store.take_for_flush()?;
        let persons = self
            .config
            .identity
            .as_ref()
            .map_or(0, |identity| identity.take_deltas());
        Some((taken, persons))
    }

    /// Applies the person updates, then writes the Parquet files, then commits the queue
    /// offset: a crash in between replays the events, and the updates recorded as
    /// applied are not gathered again.
    async fn flush_and_commit(&self, taken: Option<(Taken, usize)>) {
        let Some((taken, persons)) = taken else {
            return;
        };
        if let (Some(identity), true) = (&self.config.identity, persons > 0) {
            let at = Applied {
                fence: self.store.fence(),
                offset: taken.max_offset(),
            };
            if let Err(e) = identity.apply(Some(at)).await {
                if matches!(e, StoreError::Fenced(_)) {
                    return self.lose(&e);
                }
                metrics::counter!(m::FLUSH_FAILURES_TOTAL).increment(1);
                self.health.flush.failed(&e);
                self.flush_retry.lock().failed();
                tracing::error!(error = %e, "person updates failed; events stay buffered and are retried");
                self.store.untake(taken);
                return;
            }
        }
        if let Some(tap) = &self.config.tap {
            let end = taken.max_offset() + 1;
            if tokio::time::timeout(TAP_SETTLE_LIMIT, tap.settled(end))
                .await
                .is_err()
            {
                metrics::counter!(m::TAP_UNSETTLED_FLUSHES_TOTAL).increment(1);
                tracing::warn!(end, "the event tap did not settle in time; flushing anyway");
            }
        }
        match self.store.write_taken(taken).await {
            Ok(offset) => {
                self.health.flush.ok();
                self.flush_retry.lock().succeeded();
                if let Err(e) = self.queue.commit(offset + 1).await {
                    tracing::warn!(offset, error = %e, "queue commit failed; will retry with the next flush");
                }
            }
            Err(EventStoreError::Catalog(e @ StoreError::Fenced(_))) => self.lose(&e),
            Err(e) => {
                metrics::counter!(m::FLUSH_FAILURES_TOTAL).increment(1);
                self.health.flush.failed(&e);
                self.flush_retry.lock().failed();
                tracing::error!(error = %e, "event flush failed; events stay buffered and are retried");
            }
        }
    }

    /// A write was refused under the lane's fence: the partition has another holder,
    /// who replays whatever this one held. Stops consuming; nothing more is written.
    fn lose(&self, e: &StoreError) {
        metrics::counter!(m::FENCED_WRITES_TOTAL).increment(1);
        tracing::warn!(partition = self.partition(), error = %e, "a write was refused: the partition's lease passed on; these workers stop");
        self.lost.cancel();
    }
}

/// Compacts small files every `interval` until `shutdown`.
async fn compact_periodically(
    store: Arc<EventStore>,
    interval: Duration,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match health.report(store.compact().await) {
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

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_flushes_back_off_to_a_ceiling_and_a_success_resets_it() {
        let mut retry = Backoff::default();
        assert!(retry.wait().is_zero());
        let mut waits = Vec::new();
        for _ in 0..8 {
            retry.failed();
            waits.push(retry.wait());
        }
        // 250 ms, 500 ms, 1 s, 2 s, 4 s, 8 s, then 10 s.
        for (wait, want) in waits
            .iter()
            .zip([250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000])
        {
            let want = Duration::from_millis(want);
            assert!(
                *wait <= want && *wait + Duration::from_millis(100) > want,
                "{wait:?} vs {want:?}"
            );
        }
        retry.succeeded();
        assert!(retry.wait().is_zero());
    }
}
