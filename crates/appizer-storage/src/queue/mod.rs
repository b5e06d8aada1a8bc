//! The durable queue between ingestion and the workers: the write-ahead log of events.
//! `append` returns only once the record is durable (fsync'd), so an acknowledged
//! request survives a crash; consumers commit the offset below which everything is
//! safely stored elsewhere, and space below it is reclaimed. Embedded backend: a
//! segmented append-only log ([`log::DurableLog`]); scale-out backend: a NATS JetStream
//! stream ([`nats::NatsQueue`]), chosen by the URL's scheme ([`QueueBackend`]).
//! `tests/queue_conformance.rs` runs one suite on both.
//!
//! Each backend is a folder of the same files: `mod.rs` (the backend and its trait
//! implementation), `config.rs`, `errors.rs` (how its failures become
//! [`QueueError`]s), `tests.rs`, and the parts of its own (the log's segment format,
//! writer, reader and recovery; the JetStream reader).

pub mod log;
pub mod nats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use appizer_core::ProjectId;
use async_trait::async_trait;

pub use log::{DurableLog, LogConfig};
pub use nats::{NatsConfig, NatsQueue};

/// Which queue a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueBackend {
    /// The embedded log: empty or `file:` (the default directory), `file:///path` or
    /// `file:/path` (that directory).
    Log { dir: Option<PathBuf> },
    /// NATS JetStream: `nats://` or `tls://` (the URL as given).
    Nats { url: String },
}

impl QueueBackend {
    pub fn from_url(url: &str) -> Result<Self, QueueError> {
        if url.is_empty() {
            return Ok(Self::Log { dir: None });
        }
        if let Some(rest) = url.strip_prefix("file:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return Ok(Self::Log {
                dir: (!path.is_empty()).then(|| PathBuf::from(path)),
            });
        }
        if url.starts_with("nats://") || url.starts_with("tls://") {
            return Ok(Self::Nats { url: url.into() });
        }
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(QueueError::Unavailable(format!(
            "no queue backend for `{scheme}:`: use file: (or nothing) for the embedded log, nats:// for JetStream"
        )))
    }
}

/// A record read back: its offset and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// Sizes of the queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// The offset the next record will get (everything below is durable).
    pub end: u64,
    /// Everything below this offset has been processed.
    pub committed: u64,
    /// Bytes of log on disk.
    pub disk_bytes: u64,
}

impl QueueStats {
    /// Records appended but not yet processed.
    pub fn depth(&self) -> u64 {
        self.end.saturating_sub(self.committed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is over its disk budget of {budget_bytes} bytes; retry later")]
    Full { budget_bytes: u64 },
    #[error("a record of {size} bytes exceeds the limit of {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("an empty record cannot be queued")]
    EmptyRecord,
    #[error("queue I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue data is corrupt: {0}")]
    Corrupt(String),
    #[error("the queue is closed")]
    Closed,
    #[error("the queue server is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EventQueue: Send + Sync + 'static {
    /// Appends one record and returns its offset once it is durable.
    async fn append(&self, payload: Vec<u8>) -> Result<u64, QueueError>;

    /// A reader of the durable records from `offset` on.
    fn reader(&self, offset: u64) -> Result<Box<dyn QueueReader>, QueueError>;

    /// Declares every record below `offset` processed (persisted, monotonic).
    async fn commit(&self, offset: u64) -> Result<(), QueueError>;

    fn stats(&self) -> QueueStats;

    /// Largest record `append` takes; a request's events that do not fit in one go in
    /// several records.
    fn max_record_bytes(&self) -> usize;

    /// Whether the queue can take appends now (for readiness checks).
    async fn ping(&self) -> Result<(), QueueError>;
}

/// The queue's partitions: one queue each (a JetStream stream per partition; the
/// embedded log is one partition). An event goes to the partition of its project and
/// distinct id ([`Partitions::of`]), so one person's events stay in one partition, in
/// the order they were appended; each partition is consumed by one worker at a time.
#[derive(Clone)]
pub struct Partitions {
    queues: Vec<Arc<dyn EventQueue>>,
}

impl std::fmt::Debug for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitions")
            .field("count", &self.queues.len())
            .finish()
    }
}

impl Partitions {
    /// `queues[k]` is partition `k`. Panics if there are none.
    pub fn new(queues: Vec<Arc<dyn EventQueue>>) -> Self {
        assert!(!queues.is_empty(), "a queue has at least one partition");
        Self { queues }
    }

    /// One partition.
    pub fn single(queue: Arc<dyn EventQueue>) -> Self {
        Self::new(vec![queue])
    }

    pub fn count(&self) -> u32 {
        self.queues.len() as u32
    }

    /// Partition `k`'s queue. Panics if `k` is not below [`count`](Self::count).
    pub fn get(&self, partition: u32) -> &Arc<dyn EventQueue> {
        &self.queues[partition as usize]
    }

    /// The partition of an event: FNV-1a over the project id and the distinct id,
    /// modulo the count. Stable across versions and nodes (every API node must place
    /// a person's events alike), so never to be changed.
    pub fn of(&self, project: ProjectId, distinct_id: &str) -> u32 {
        partition_of(self.count(), project, distinct_id)
    }

    /// The largest record every partition takes.
    pub fn max_record_bytes(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.max_record_bytes())
            .min()
            .unwrap_or(0)
    }

    /// Every partition's sizes, added up (`end` and `committed` are sums of offsets:
    /// their difference is the records not yet processed).
    pub fn stats(&self) -> QueueStats {
        self.queues.iter().map(|q| q.stats()).fold(
            QueueStats {
                end: 0,
                committed: 0,
                disk_bytes: 0,
            },
            |sum, s| QueueStats {
                end: sum.end + s.end,
                committed: sum.committed + s.committed,
                disk_bytes: sum.disk_bytes + s.disk_bytes,
            },
        )
    }

    /// Whether every partition takes appends now.
    pub async fn ping(&self) -> Result<(), QueueError> {
        for queue in &self.queues {
            queue.ping().await?;
        }
        Ok(())
    }
}

/// See [`Partitions::of`].
pub fn partition_of(count: u32, project: ProjectId, distinct_id: &str) -> u32 {
    if count <= 1 {
        return 0;
    }
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in project
        .as_uuid()
        .as_bytes()
        .iter()
        .chain(distinct_id.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % u64::from(count)) as u32
}

#[async_trait]
pub trait QueueReader: Send {
    /// Up to `max` records; waits up to `wait` when none are available (then returns
    /// an empty batch).
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_keeps_one_partition_and_persons_spread_over_all() {
        let project: ProjectId = "0190a7d6-1c2b-7e3f-8a4b-5c6d7e8f9a0b".parse().unwrap();
        // Pinned (FNV-1a computed by hand): every node and version must place events
        // alike.
        assert_eq!(partition_of(16, project, "user-1"), 2);
        assert_eq!(partition_of(3, project, "user-1"), 2);
        assert_eq!(partition_of(1, project, "user-1"), 0);
        let mut seen = [0u32; 16];
        for i in 0..16_000 {
            seen[partition_of(16, project, &format!("user-{i}")) as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| (800..1200).contains(&n)),
            "uneven spread: {seen:?}"
        );
        let other: ProjectId = "0190a7d6-1c2b-7e3f-8a4b-5c6d7e8f9a0c".parse().unwrap();
        let moved = (0..100)
            .filter(|i| {
                let id = format!("user-{i}");
                partition_of(16, project, &id) != partition_of(16, other, &id)
            })
            .count();
        assert!(moved > 50, "the project takes part in the placement");
    }

    #[test]
    fn the_backend_is_chosen_by_the_scheme() {
        assert_eq!(
            QueueBackend::from_url("").unwrap(),
            QueueBackend::Log { dir: None }
        );
        assert_eq!(
            QueueBackend::from_url("file:").unwrap(),
            QueueBackend::Log { dir: None }
        );
        for url in ["file:///srv/queue", "file:/srv/queue"] {
            assert_eq!(
                QueueBackend::from_url(url).unwrap(),
                QueueBackend::Log {
                    dir: Some("/srv/queue".into())
                }
            );
        }
        let nats = "nats://user:pw@10.0.0.7:4222,nats://10.0.0.8:4222";
        assert_eq!(
            QueueBackend::from_url(nats).unwrap(),
            QueueBackend::Nats { url: nats.into() }
        );
        let e = QueueBackend::from_url("kafka://user:pw@x:9092").unwrap_err();
        assert!(
            e.to_string().contains("`kafka:`") && !e.to_string().contains("pw"),
            "{e}"
        );
    }
}
