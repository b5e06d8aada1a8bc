//! The node's share of the queue's partitions: the workers take partitions through
//! leases in the metadata store ([`appizer_storage::leases`]) and run one [`Pipeline`]
//! per partition held, each on its own lane of the event store, under the lease's
//! fence. Every third of the lease time they renew what they hold, announce
//! themselves, and move towards their fair share of the partitions
//! ([`fair_share`](appizer_storage::leases::fair_share)) among the workers announced:
//! a worker with more gives the surplus up (its pipeline flushes and commits first,
//! then the lease is released, so the next holder starts at once), one with fewer
//! takes partitions that are free or whose lease expired. A pipeline whose write was
//! refused, or whose lease could not be renewed, is stopped; the buffered events it
//! held are replayed by the next holder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use appizer_core::health::{HealthReporter, Policy};
use appizer_storage::events::EventStore;
use appizer_storage::leases::{fair_share, Lease, LeaseStore};
use appizer_storage::queue::Partitions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineConfig};

/// The health component of the partition leases.
pub const PARTITIONS: &str = "partitions";

/// Builds the pipeline configuration of a partition taken (each its own person
/// updates: they are applied with the partition's offset).
pub type PipelineFactory = Arc<dyn Fn(u32) -> PipelineConfig + Send + Sync>;

/// See the module documentation.
pub struct Consumers {
    queue: Partitions,
    store: Arc<EventStore>,
    leases: Arc<dyn LeaseStore>,
    /// This worker's name in the leases: unique per process.
    owner: String,
    ttl: Duration,
    pipelines: PipelineFactory,
    health: HealthReporter,
    /// The pipelines' own component: a worker that holds no partition has nothing to
    /// consume, which is healthy, so it reports that each pass.
    idle: HealthReporter,
}

/// A partition held, and its running workers.
struct Held {
    lease: Lease,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Consumers {
    pub fn new(
        queue: Partitions,
        store: Arc<EventStore>,
        leases: Arc<dyn LeaseStore>,
        ttl: Duration,
        pipelines: PipelineFactory,
        registry: &appizer_core::health::HealthRegistry,
    ) -> Self {
        let owner = format!(
            "worker-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Self {
            queue,
            store,
            leases,
            owner,
            ttl,
            pipelines,
            health: registry.register(
                PARTITIONS,
                Policy {
                    stale_after: Some(ttl * 3),
                    ..Policy::default()
                },
            ),
            idle: registry.register(crate::pipeline::PIPELINE, Policy::default()),
        }
    }

    /// This worker's name in the lease table.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Holds and consumes this node's share of the partitions until `shutdown`; then
    /// stops every pipeline (each flushes what it holds) and releases the leases.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let count = self.queue.count();
        while let Err(e) = self.leases.ensure_partitions(count).await {
            tracing::error!(error = %e, "cannot set up the queue partitions' leases; retrying in 1 s");
            self.health.failed(&e);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let mut held: BTreeMap<u32, Held> = BTreeMap::new();
        let tick = self.ttl / 3;
        loop {
            match self.step(&mut held, &shutdown).await {
                Ok(()) => self.health.ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "partition leases: this pass failed");
                    self.health.failed(&e);
                }
            }
            metrics::gauge!(m::PARTITIONS_HELD).set(held.len() as f64);
            if held.is_empty() {
                self.idle.ok();
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(tick) => {}
            }
        }
        for (partition, h) in std::mem::take(&mut held) {
            self.give_up(partition, h).await;
        }
        metrics::gauge!(m::PARTITIONS_HELD).set(0.0);
        if let Err(e) = self.leases.leave(&self.owner).await {
            tracing::warn!(error = %e, "cannot withdraw this worker's announcement");
        }
    }

    /// One pass: renew, announce, then give up or take partitions towards the share.
    async fn step(
        &self,
        held: &mut BTreeMap<u32, Held>,
        shutdown: &CancellationToken,
    ) -> Result<(), appizer_storage::StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        // Pipelines that ended (a refused write, a failed run) give their partition
        // back; it is taken again, under a new epoch, by whoever takes it next.
        let ended: Vec<u32> = held
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for partition in ended {
            if let Some(h) = held.remove(&partition) {
                let _ = self.leases.release(&h.lease, &self.owner).await;
            }
        }
        let mut lost = Vec::new();
        for (partition, h) in held.iter_mut() {
            match self
                .leases
                .renew(&h.lease, &self.owner, self.ttl, now)
                .await?
            {
                Some(lease) => h.lease = lease,
                None => lost.push(*partition),
            }
        }
        for partition in lost {
            if let Some(h) = held.remove(&partition) {
                metrics::counter!(m::LEASES_LOST_TOTAL).increment(1);
                tracing::warn!(partition, "lost the partition's lease; its workers stop");
                // Nothing more of theirs may be written: no final flush.
                h.task.abort();
            }
        }
        let workers = self.leases.heartbeat(&self.owner, self.ttl, now).await?;
        let share = fair_share(self.queue.count(), &workers, &self.owner) as usize;
        while held.len() > share {
            let Some((partition, h)) = held.pop_last() else {
                break;
            };
            tracing::info!(partition, "giving the partition up to another worker");
            self.give_up(partition, h).await;
        }
        if held.len() < share {
            for state in self.leases.leases().await? {
                if held.len() >= share || shutdown.is_cancelled() {
                    break;
                }
                let free = state.owner.is_none() || state.expires_at_ms < now;
                if held.contains_key(&state.partition) || !free {
                    continue;
                }
                let Some(lease) = self
                    .leases
                    .acquire(state.partition, &self.owner, self.ttl, now)
                    .await?
                else {
                    continue;
                };
                match self.start(lease, shutdown).await {
                    Ok(h) => {
                        tracing::info!(
                            partition = state.partition,
                            epoch = lease.epoch,
                            "took the partition"
                        );
                        held.insert(state.partition, h);
                    }
                    Err(e) => {
                        tracing::error!(partition = state.partition, error = %e, "cannot start the partition's workers");
                        let _ = self.leases.release(&lease, &self.owner).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn start(
        &self,
        lease: Lease,
        shutdown: &CancellationToken,
    ) -> Result<Held, crate::pipeline::PipelineError> {
        let lane = self.store.lane(lease.fence());
        let queue = self.queue.get(lease.partition).clone();
        let pipeline = Pipeline::new(queue, lane, (self.pipelines)(lease.partition)).await?;
        let stop = shutdown.child_token();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(e) = pipeline.run(stop).await {
                    tracing::error!(partition = lease.partition, error = %e, "the partition's workers ended");
                }
            }
        });
        Ok(Held { lease, stop, task })
    }

    /// Stops a partition's pipeline (it flushes and commits what it holds), then
    /// releases its lease so the next holder need not wait for it to expire.
    async fn give_up(&self, partition: u32, h: Held) {
        h.stop.cancel();
        if let Err(e) = h.task.await {
            if e.is_panic() {
                tracing::error!(partition, "the partition's workers panicked");
            }
        }
        if let Err(e) = self.leases.release(&h.lease, &self.owner).await {
            tracing::warn!(partition, error = %e, "cannot release the partition's lease; it expires");
        }
    }
}
