//! The delivery loop: one lane per platform takes its due records under a lease and
//! sends each (at most `push.concurrency` in flight per lane, so a slow or throttling
//! provider never holds up another's deliveries), and hands the outcomes to one writer
//! that appends the delivery events to the event queue and then records the outcomes in
//! the outbox, in batches. Events first: a crash between the two sends the delivery
//! again and its event is a duplicate the workers drop; never an outcome without its
//! event.

use std::sync::Arc;
use std::time::Duration;

use appizer_core::push::{Delivery, DeliveryOutcome, DeviceState, Platform};
use appizer_events::append::append_events;
use appizer_storage::push::DEVICE_DELETED;
use appizer_storage::StoreError;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{events, metrics, Outbox};
use crate::providers::{Attempt, Target};

/// How often an idle loop looks for retries that came due.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// The writer records outcomes at least this often.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Outcomes recorded per outbox transaction at most.
const WRITE_BATCH: usize = 2000;
/// How often the queue depth metric is read.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// A delivery's own title and body, as the campaign runner rendered them.
#[derive(serde::Deserialize)]
struct Rendered {
    title: String,
    body: String,
}

/// Whether a campaign's delivery may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    Send,
    /// Paused: held until it resumes.
    Hold,
    /// Cancelled or deleted: never sent.
    Cancel,
}

/// One finished attempt, for the writer.
struct Done {
    delivery: Delivery,
    tags: Option<Arc<(crate::message::Content, crate::message::Tags)>>,
    outcome: DeliveryOutcome,
}

/// The id every attempt of one delivery carries (APNs' `apns-id`): a digest of the
/// message and the device, in UUID form.
pub(super) fn delivery_id(delivery: &Delivery) -> uuid::Uuid {
    digest_uuid(&[
        delivery.message_id.as_uuid().as_bytes(),
        delivery.device_id.as_uuid().as_bytes(),
    ])
}

/// A UUID made of the SHA-256 of `parts` (version 8, RFC 9562 variant): the same parts,
/// the same id, whenever it is made again.
pub(crate) fn digest_uuid(parts: &[&[u8]]) -> uuid::Uuid {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

/// A platform's place in `Platform::ALL` (its lane's wake-up).
pub(super) fn platform_index(platform: Platform) -> usize {
    Platform::ALL
        .iter()
        .position(|p| *p == platform)
        .unwrap_or(0)
}

fn platform_label(delivery: &Delivery) -> &'static str {
    delivery.platform.as_str()
}

impl Outbox {
    /// Runs the delivery loop until `shutdown`; what is in flight then finishes and is
    /// recorded before it returns.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        match self.store.push().release_deliveries().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "deliveries held by an earlier run are due again"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot release earlier deliveries"),
        }
        let (done_tx, done_rx) = mpsc::channel::<Done>(WRITE_BATCH * 2);
        let writer = tokio::spawn(self.clone().write(done_rx));
        let depth = tokio::spawn(self.clone().report_depth(shutdown.clone()));
        // One lane per platform, so a slow or throttling provider never holds up the
        // others' deliveries.
        let lanes: Vec<_> = Platform::ALL
            .into_iter()
            .map(|platform| {
                tokio::spawn(
                    self.clone()
                        .lane(platform, done_tx.clone(), shutdown.clone()),
                )
            })
            .collect();
        drop(done_tx);
        for lane in lanes {
            let _ = lane.await;
        }
        let _ = writer.await;
        depth.abort();
    }

    /// Takes the platform's due deliveries and sends them, at most `push.concurrency`
    /// at a time; when it stops, what is in flight finishes first.
    async fn lane(
        self: Arc<Self>,
        platform: Platform,
        done: mpsc::Sender<Done>,
        shutdown: CancellationToken,
    ) {
        let concurrency = self.config.concurrency.max(1);
        let limit = Arc::new(Semaphore::new(concurrency));
        let lease = chrono::Duration::milliseconds((self.config.request_timeout_ms * 5) as i64);
        let batch = u32::try_from(self.config.batch_size).unwrap_or(u32::MAX);
        let wake = &self.wake[platform_index(platform)];
        while !shutdown.is_cancelled() {
            let now = Utc::now();
            let taken = match self
                .store
                .push()
                .take_deliveries(Some(platform), now, batch, now + lease)
                .await
            {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take deliveries; retrying in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if taken.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            for delivery in taken {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let (outbox, done) = (self.clone(), done.clone());
                tokio::spawn(async move {
                    ::metrics::gauge!(metrics::IN_FLIGHT).increment(1.0);
                    let (tags, outcome) = outbox.deliver(&delivery).await;
                    ::metrics::gauge!(metrics::IN_FLIGHT).decrement(1.0);
                    drop(permit);
                    let _ = done
                        .send(Done {
                            delivery,
                            tags,
                            outcome,
                        })
                        .await;
                });
            }
        }
        let _ = limit.acquire_many(concurrency as u32).await;
    }

    /// Sends one delivery; the outcome to record.
    async fn deliver(
        &self,
        delivery: &Delivery,
    ) -> (
        Option<Arc<(crate::message::Content, crate::message::Tags)>>,
        DeliveryOutcome,
    ) {
        let Some(device) = &delivery.device else {
            return (None, DeliveryOutcome::Retired(DEVICE_DELETED.into()));
        };
        if device.state == DeviceState::Retired {
            return (None, DeliveryOutcome::Retired("device_retired".into()));
        }
        let later = |reason: String| DeliveryOutcome::Retry {
            due: Utc::now() + chrono::Duration::seconds(5),
            reason,
        };
        let scope = match self.scope(delivery.project_id).await {
            Ok(Some(scope)) => scope,
            Ok(None) => return (None, DeliveryOutcome::Failed("project_deleted".into())),
            Err(e) => return (None, later(format!("store: {e}"))),
        };
        let loaded = match self.content(scope, delivery.message_id).await {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return (None, DeliveryOutcome::Failed("message_deleted".into())),
            // Unreadable content stays unreadable: no retry.
            Err(StoreError::Corrupt(_)) => {
                return (None, DeliveryOutcome::Failed("message_unreadable".into()))
            }
            Err(e) => return (None, later(format!("store: {e}"))),
        };
        if let Some(campaign) = &loaded.1.campaign_id {
            match self.campaign_gate(scope, campaign).await {
                Ok(Gate::Send) => {}
                Ok(Gate::Hold) => return (Some(loaded), DeliveryOutcome::Held),
                Ok(Gate::Cancel) => return (Some(loaded), DeliveryOutcome::Cancelled),
                Err(e) => return (Some(loaded), later(format!("store: {e}"))),
            }
        }
        let provider = delivery.platform.provider();
        let sender = match self.sender(scope, provider).await {
            Ok(Some(Ok(sender))) => sender,
            Ok(Some(Err(unusable))) => {
                return (Some(loaded), DeliveryOutcome::Failed(unusable.to_string()))
            }
            Ok(None) => {
                let reason = format!("{}_not_configured", provider.as_str());
                return (Some(loaded), DeliveryOutcome::Failed(reason));
            }
            Err(e) => return (Some(loaded), later(format!("store: {e}"))),
        };
        let target = Target {
            address: &device.address,
            web_keys: device.web_keys.as_ref(),
            delivery_id: delivery_id(delivery),
        };
        let (content, tags) = &*loaded;
        let own;
        let content = match delivery
            .rendered
            .as_deref()
            .map(serde_json::from_str::<Rendered>)
        {
            None => content,
            Some(Ok(r)) => {
                let mut c = content.clone();
                c.notification.title = r.title;
                c.notification.body = r.body;
                own = c;
                &own
            }
            Some(Err(_)) => {
                return (
                    Some(loaded),
                    DeliveryOutcome::Failed("rendering_unreadable".into()),
                )
            }
        };
        let outcome = match sender.send(content, tags, target).await {
            Attempt::Accepted => DeliveryOutcome::Sent,
            Attempt::Retire(reason) => DeliveryOutcome::Retired(reason),
            Attempt::Fail(reason) => DeliveryOutcome::Failed(reason),
            Attempt::Retry { reason, .. } if delivery.attempts >= self.config.max_attempts => {
                DeliveryOutcome::Failed(format!("attempts_exhausted ({reason})"))
            }
            Attempt::Retry { after, reason } => {
                let wait = self.backoff.delay(delivery.attempts, after);
                DeliveryOutcome::Retry {
                    due: Utc::now()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    reason,
                }
            }
        };
        (Some(loaded), outcome)
    }

    /// Records outcomes in batches (what arrives within [`WRITE_EVERY`] of the first,
    /// at most [`WRITE_BATCH`]): events into the queue first, then the outbox.
    async fn write(self: Arc<Self>, mut done: mpsc::Receiver<Done>) {
        let mut batch: Vec<Done> = Vec::with_capacity(WRITE_BATCH);
        loop {
            let Some(first) = done.recv().await else {
                return;
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + WRITE_EVERY;
            let mut open = true;
            while open && batch.len() < WRITE_BATCH {
                match tokio::time::timeout_at(deadline, done.recv()).await {
                    Ok(Some(d)) => batch.push(d),
                    Ok(None) => open = false,
                    Err(_) => break,
                }
            }
            self.record(&batch).await;
            batch.clear();
            if !open {
                return;
            }
        }
    }

    /// Records one batch, retrying until the store and the queue take it (the
    /// deliveries stay leased meanwhile; a crash sends them again).
    async fn record(&self, batch: &[Done]) {
        let at = Utc::now();
        let events: Vec<_> = batch
            .iter()
            .filter_map(|d| {
                let tags = d.tags.as_ref().map(|l| &l.1);
                events::event(&d.delivery, tags, &d.outcome, at)
            })
            .collect();
        if !events.is_empty() {
            // A retry appends the whole batch again: the workers drop the events that
            // did land by their message ids.
            let mut wait = Duration::from_millis(100);
            while let Err(e) = append_events(&self.queue, &events).await {
                ::metrics::counter!(metrics::EVENT_APPEND_FAILURES_TOTAL).increment(1);
                tracing::warn!(error = %e, "cannot append delivery events; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
        let done: Vec<_> = batch
            .iter()
            .map(|d| {
                (
                    d.delivery.message_id,
                    d.delivery.device_id,
                    d.outcome.clone(),
                )
            })
            .collect();
        let mut wait = Duration::from_millis(100);
        while let Err(e) = self.store.push().complete_deliveries(&done, at).await {
            tracing::warn!(error = %e, "cannot record delivery outcomes; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        for d in batch {
            let platform = platform_label(&d.delivery);
            match &d.outcome {
                DeliveryOutcome::Sent => {
                    ::metrics::counter!(metrics::SENT_TOTAL, "platform" => platform).increment(1)
                }
                DeliveryOutcome::Failed(reason) => ::metrics::counter!(
                    metrics::FAILED_TOTAL, "platform" => platform, "reason" => reason_label(reason)
                )
                .increment(1),
                DeliveryOutcome::Retired(reason) => ::metrics::counter!(
                    metrics::RETIRED_TOTAL, "platform" => platform, "reason" => reason_label(reason)
                )
                .increment(1),
                DeliveryOutcome::Retry { reason, .. } => ::metrics::counter!(
                    metrics::RETRIES_TOTAL, "platform" => platform, "reason" => reason_label(reason)
                )
                .increment(1),
                DeliveryOutcome::Held | DeliveryOutcome::Cancelled => {}
            }
        }
    }

    async fn report_depth(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Ok(n) = self.store.push().queued_deliveries().await {
                ::metrics::gauge!(metrics::QUEUE_DEPTH).set(n as f64);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(DEPTH_EVERY) => {}
            }
        }
    }
}

/// A reason as a metric label: its first word, so labels stay few (`attempts_exhausted
/// (429)` counts as `attempts_exhausted`).
fn reason_label(reason: &str) -> String {
    reason
        .split([' ', ':', '('])
        .next()
        .unwrap_or("unknown")
        .chars()
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use appizer_core::push::Platform;
    use appizer_core::{DeviceId, MessageId, ProjectId};

    #[test]
    fn a_delivery_keeps_one_id_across_attempts() {
        let delivery = |message, device, attempts| Delivery {
            message_id: message,
            device_id: device,
            project_id: ProjectId::new(),
            platform: Platform::Ios,
            attempts,
            device: None,
            rendered: None,
        };
        let (m, d) = (MessageId::new(), DeviceId::new());
        let id = delivery_id(&delivery(m, d, 1));
        assert_eq!(id, delivery_id(&delivery(m, d, 7)));
        assert_ne!(id, delivery_id(&delivery(m, DeviceId::new(), 1)));
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(
            reason_label("attempts_exhausted (429)"),
            "attempts_exhausted"
        );
        assert_eq!(reason_label("410 subscription gone"), "410");
    }
}
