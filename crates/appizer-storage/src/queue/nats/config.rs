//! The JetStream queue's settings.

use std::time::Duration;

/// Where the queue lives and how it is kept.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port` (several comma-separated for a cluster; `tls://` for TLS).
    pub url: String,
    /// The JetStream stream; created when missing, its limits updated when present.
    pub stream: String,
    /// Copies JetStream keeps of each record (1, or 3 on a cluster).
    pub replicas: usize,
    /// Appends are refused (`QueueError::Full`) while the stream holds this many bytes.
    pub max_disk_bytes: u64,
    /// How long opening waits for the server, and each request for its answer.
    pub timeout: Duration,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            replicas: 1,
            max_disk_bytes: 10 << 30,
            timeout: Duration::from_secs(5),
        }
    }

    /// The servers of `url`, one per comma-separated entry: the client connects to
    /// one of them and moves to another when it goes.
    pub fn servers(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The one subject the stream holds.
    pub fn subject(&self) -> String {
        format!("appizer.queue.{}", self.stream)
    }
}
