//! Reading the stream in order, from an offset on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};

use super::errors::unavailable;
use super::PULL_BATCH;
use crate::queue::{QueueError, QueueReader, Record};

/// Reads the stream in order through an ordered consumer: an ephemeral consumer the
/// client recreates from the next sequence whenever it misses one.
pub(super) struct NatsReader {
    pub(super) stream: stream::Stream<()>,
    pub(super) subject: String,
    pub(super) end: Arc<AtomicU64>,
    pub(super) next: u64,
    pub(super) messages: Option<consumer::pull::Ordered>,
}

impl NatsReader {
    async fn messages(&mut self) -> Result<&mut consumer::pull::Ordered, QueueError> {
        if self.messages.is_none() {
            let consumer = self
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: self.subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: self.next + 1,
                    },
                    max_batch: PULL_BATCH,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            self.messages = Some(consumer.messages().await.map_err(unavailable)?);
        }
        Ok(self.messages.as_mut().expect("just set"))
    }

    /// The delivered messages as records, leaving out any below the reader's offset.
    fn records(&mut self, delivered: Vec<jetstream::Message>) -> Result<Vec<Record>, QueueError> {
        let mut out = Vec::with_capacity(delivered.len());
        let mut next = self.next;
        for message in delivered {
            let offset = message.info().map_err(unavailable)?.stream_sequence - 1;
            if offset >= next {
                next = offset + 1;
                out.push(Record {
                    offset,
                    payload: message.message.payload.to_vec(),
                });
            }
        }
        self.next = next;
        self.end.fetch_max(next, Ordering::AcqRel);
        Ok(out)
    }
}

#[async_trait]
impl QueueReader for NatsReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, QueueError> {
        let batch = self.read(max, wait).await;
        if batch.is_err() {
            // The next call starts a new consumer at the first record not returned.
            self.messages = None;
        }
        batch
    }
}

impl NatsReader {
    async fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, QueueError> {
        let messages = self.messages().await?;
        let first = match tokio::time::timeout(wait, messages.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(QueueError::Closed),
            Ok(Some(m)) => m.map_err(unavailable)?,
        };
        let mut delivered = vec![first];
        while delivered.len() < max {
            match messages.next().now_or_never() {
                Some(Some(m)) => delivered.push(m.map_err(unavailable)?),
                Some(None) | None => break,
            }
        }
        self.records(delivered)
    }
}
