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
//!
//! A queue of this node's own (the embedded log) is nobody else's to consume: its one
//! partition is held without a lease ([`Sharing::Private`]), as a single node needs.

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

/// Whether the queue is shared with other nodes' workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// On JetStream: partitions are taken through leases.
    Leased,
    /// The node's own embedded log: its partition is always this node's, unfenced.
    Private,
}

/// See the module documentation.
pub struct Consumers {
    queue: Partitions,
    store: Arc<EventStore>,
    leases: Arc<dyn LeaseStore>,
    /// This worker's name in the leases: unique per process.
    owner: String,
    ttl: Duration,
    sharing: Sharing,
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
        sharing: Sharing,
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
            sharing,
            pipelines,
            health: registry.register(
                PARTITIONS,
                Policy {
                    // Each pass of the lease loop reports; a private queue has none.
                    stale_after: (sharing == Sharing::Leased).then_some(ttl * 3),
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
    /// `first_pass` is told once the first pass is over (the partitions it could take
    /// are being consumed: their duplicate windows and counters rebuilt).
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        first_pass: tokio::sync::oneshot::Sender<()>,
    ) {
        if self.sharing == Sharing::Private {
            return self.run_private(shutdown, first_pass).await;
        }
        let mut first_pass = Some(first_pass);
        let count = self.queue.count();
        while let Err(e) = self.leases.ensure_partitions(count).await {
            if let Some(tx) = first_pass.take() {
                let _ = tx.send(());
            }
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
            if let Some(tx) = first_pass.take() {
                let _ = tx.send(());
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

    /// The node's own queue: its one partition, unleased, its pipeline started again
    /// after a pause whenever a run fails.
    async fn run_private(
        &self,
        shutdown: CancellationToken,
        first_pass: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut first_pass = Some(first_pass);
        loop {
            let fence = appizer_storage::leases::Fence::unleased(0);
            let pipeline = Pipeline::new(
                self.queue.get(0).clone(),
                self.store.lane(fence),
                (self.pipelines)(0),
            )
            .await;
            if let Some(tx) = first_pass.take() {
                let _ = tx.send(());
            }
            metrics::gauge!(m::PARTITIONS_HELD).set(1.0);
            let ended = match pipeline {
                Ok(pipeline) => pipeline.run(shutdown.clone()).await,
                Err(e) => Err(e),
            };
            match ended {
                Ok(()) => break,
                Err(e) => {
                    // Resumed from the durable state; what it had buffered is replayed
                    // from the queue.
                    tracing::error!(error = %e, "ingestion workers failed; restarting in 1 s");
                    self.health.failed(&e);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        metrics::gauge!(m::PARTITIONS_HELD).set(0.0);
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
