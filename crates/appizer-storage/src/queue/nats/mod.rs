//! The queue on NATS JetStream, for nodes that share one queue. Records are the
//! messages of one stream (file storage, `replicas` copies, discard-new at the disk
//! budget); an append returns once JetStream has acknowledged the message stored. A
//! record's offset is its stream sequence minus one. A commit purges the stream below
//! the offset, so the stream's first sequence is where the committed offset is kept and
//! a restart, on any node, resumes from it.
//!
//! An append whose acknowledgement does not come (a server lost, a stream leader being
//! elected) is published again, up to [`PUBLISH_ATTEMPTS`] times. A retry may store a
//! record twice (the first publish may have landed); the workers drop the second
//! copy's events by their message ids. Messages carry no `Nats-Msg-Id`: with one, the
//! server (2.9) let a stream at its byte limit drop its oldest messages instead of
//! refusing the new one, which would lose acknowledged events.
//!
//! JetStream stores an acknowledged message on every replica, but a single server
//! syncs its files to disk only every `sync_interval` (2 minutes by default): for
//! durability against power loss, run three replicas or set `sync_interval: always`.

mod config;
mod errors;
mod reader;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream::{self, stream};
use async_trait::async_trait;

pub use config::NatsConfig;

use super::{EventQueue, QueueError, QueueReader, QueueStats};
use errors::{is_over_budget, is_transient, unavailable};
use reader::NatsReader;

/// Records a consumer asks the server for at once: bounds what a reader holds in
/// memory to this many records (each at most the server's `max_payload`).
pub(super) const PULL_BATCH: i64 = 128;

/// Publishes of one record before an append fails; the waits between them double from
/// 100 ms, so the last comes about 1.5 s after the first, time for a cluster to elect
/// a stream's new leader.
pub(super) const PUBLISH_ATTEMPTS: u32 = 5;

/// Publishes sent again after one went unacknowledged (a server lost, a leader being
/// elected).
pub const PUBLISH_RETRIES_TOTAL: &str = "appizer_queue_publish_retries_total";

/// Bytes JetStream stores per message beyond its payload (subject, sequence, time,
/// checksum), to estimate `disk_bytes` between refreshes.
const MESSAGE_OVERHEAD: u64 = 64;

/// The JetStream queue. See the module documentation.
pub struct NatsQueue {
    client: async_nats::Client,
    context: jetstream::Context,
    stream: stream::Stream<()>,
    stream_name: String,
    subject: String,
    max_record_bytes: usize,
    budget_bytes: u64,
    /// One past the highest offset this node has seen (appended or read).
    end: Arc<AtomicU64>,
    committed: AtomicU64,
    disk_bytes: AtomicU64,
    commit_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("subject", &self.subject)
            .field("stats", &self.stats())
            .finish()
    }
}

impl NatsQueue {
    /// Connects, and creates the stream or brings its limits to the config.
    pub async fn open(config: NatsConfig) -> Result<Self, QueueError> {
        if !appizer_core::config::is_stream_name(&config.stream) {
            return Err(QueueError::Unavailable(format!(
                "stream name `{}`: use letters, digits, `_` and `-`",
                config.stream
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .name("appizer")
            .connection_timeout(config.timeout)
            .request_timeout(Some(config.timeout))
            .connect(config.servers())
            .await
            .map_err(unavailable)?;
        let context = jetstream::new(client.clone());
        let subject = config.subject();
        let max_payload = client.server_info().max_payload;
        let wanted = stream::Config {
            name: config.stream.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            max_bytes: i64::try_from(config.max_disk_bytes).unwrap_or(i64::MAX),
            num_replicas: config.replicas.max(1),
            description: Some("Appizer event queue".into()),
            ..Default::default()
        };
        // Nodes starting together create the same streams at once, and a cluster places
        // each replicated stream before it answers: a request that timed out is asked
        // again (creating a stream that exists updates it to the same config).
        let mut attempt = 1;
        let info = loop {
            match context.create_or_update_stream(wanted.clone()).await {
                Ok(info) => break info,
                Err(e) if attempt < PUBLISH_ATTEMPTS => {
                    tracing::info!(stream = %config.stream, attempt, error = %e, "setting up the stream; again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                        .await;
                    attempt += 1;
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        let stream = context
            .get_stream_no_info(&config.stream)
            .await
            .map_err(unavailable)?;
        let state = &info.state;
        Ok(Self {
            client,
            context,
            stream,
            stream_name: config.stream,
            subject,
            // A record travels without headers; the server counts the payload alone.
            max_record_bytes: max_payload,
            budget_bytes: config.max_disk_bytes,
            end: Arc::new(AtomicU64::new(state.last_sequence)),
            committed: AtomicU64::new(committed_from(state)),
            disk_bytes: AtomicU64::new(state.bytes),
            commit_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Deletes the stream and every record in it (tests and decommissioning).
    pub async fn delete(self) -> Result<(), QueueError> {
        self.context
            .delete_stream(&self.stream_name)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn refresh(&self) -> Result<(), QueueError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        self.end
            .fetch_max(info.state.last_sequence, Ordering::AcqRel);
        self.committed
            .fetch_max(committed_from(&info.state), Ordering::AcqRel);
        self.disk_bytes.store(info.state.bytes, Ordering::Relaxed);
        Ok(())
    }
}

/// The committed offset a stream's state stands for: everything below its first
/// sequence was purged, so processed.
fn committed_from(state: &stream::State) -> u64 {
    if state.messages == 0 {
        state.last_sequence
    } else {
        state.first_sequence.saturating_sub(1)
    }
}

#[async_trait]
impl EventQueue for NatsQueue {
    async fn append(&self, payload: Vec<u8>) -> Result<u64, QueueError> {
        if payload.is_empty() {
            return Err(QueueError::EmptyRecord);
        }
        if payload.len() > self.max_record_bytes {
            return Err(QueueError::RecordTooLarge {
                size: payload.len(),
                limit: self.max_record_bytes,
            });
        }
        let size = payload.len() as u64;
        let payload = bytes::Bytes::from(payload);
        let mut wait = std::time::Duration::from_millis(100);
        let mut attempt = 1;
        let ack = loop {
            let sent = self
                .context
                .publish(self.subject.clone(), payload.clone())
                .await;
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) => break ack,
                Err(e) if is_over_budget(&e) => {
                    return Err(QueueError::Full {
                        budget_bytes: self.budget_bytes,
                    })
                }
                Err(e) if attempt >= PUBLISH_ATTEMPTS || !is_transient(&e) => {
                    return Err(unavailable(e))
                }
                Err(e) => {
                    metrics::counter!(PUBLISH_RETRIES_TOTAL).increment(1);
                    tracing::debug!(attempt, error = %e, "publish not acknowledged; again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
            }
        };
        self.end.fetch_max(ack.sequence, Ordering::AcqRel);
        self.disk_bytes
            .fetch_add(size + MESSAGE_OVERHEAD, Ordering::Relaxed);
        Ok(ack.sequence - 1)
    }

    fn reader(&self, offset: u64) -> Result<Box<dyn QueueReader>, QueueError> {
        Ok(Box::new(NatsReader {
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            end: self.end.clone(),
            next: offset,
            messages: None,
        }))
    }

    async fn commit(&self, offset: u64) -> Result<(), QueueError> {
        let _guard = self.commit_lock.lock().await;
        let offset = offset.min(self.end.load(Ordering::Acquire));
        if offset <= self.committed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Purges every sequence below `offset + 1`, that is every offset below `offset`.
        self.stream
            .purge()
            .sequence(offset + 1)
            .await
            .map_err(unavailable)?;
        self.committed.fetch_max(offset, Ordering::AcqRel);
        self.refresh().await
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            end: self.end.load(Ordering::Acquire),
            committed: self.committed.load(Ordering::Acquire),
            disk_bytes: self.disk_bytes.load(Ordering::Relaxed),
        }
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.client.flush().await.map_err(unavailable)
    }
}
