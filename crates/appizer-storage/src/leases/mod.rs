//! Leases of the queue's partitions. Each partition of the event queue is consumed by
//! one worker at a time: the holder of its lease. A lease has an owner, an expiry the
//! owner renews, and an epoch that grows with every new holder. Every write a worker
//! makes for a partition (its event files' catalog entries, its person updates) names
//! the epoch it holds, in a [`Fence`], and the store refuses it
//! ([`StoreError::Fenced`]) once the lease has passed to another epoch: a worker that
//! was paused past its expiry, or cut off from the others, can never commit over the
//! worker that took its partition over. Expiry decides only when a lease may be taken;
//! safety rests on the epoch alone, so the nodes' clocks need not agree.
//!
//! Workers also announce themselves ([`LeaseStore::heartbeat`]), so each knows how many
//! share the partitions and how many it should hold.

mod sql;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use sql::check_fence;
pub use sql::SqlLeaseStore;

use crate::StoreError;

/// The partition a write comes from and, for a leased one, the epoch its writer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub partition: u32,
    /// `None`: the writer holds no lease (a single worker on its own store, tests and
    /// tools); the write is never refused.
    pub epoch: Option<u64>,
}

impl Fence {
    pub const fn unleased(partition: u32) -> Self {
        Self {
            partition,
            epoch: None,
        }
    }

    pub const fn leased(partition: u32, epoch: u64) -> Self {
        Self {
            partition,
            epoch: Some(epoch),
        }
    }
}

/// A lease held: what `acquire` and `renew` return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    pub epoch: u64,
    /// Milliseconds since the epoch, on the clock of the node that took or renewed it.
    pub expires_at_ms: i64,
}

impl Lease {
    /// The fence of the writes made under this lease.
    pub fn fence(&self) -> Fence {
        Fence::leased(self.partition, self.epoch)
    }
}

/// One partition's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    pub partition: u32,
    /// `None` once released (or never taken).
    pub owner: Option<String>,
    pub epoch: u64,
    pub expires_at_ms: i64,
}

#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Makes sure partitions `0..count` exist. Fails with [`StoreError::Conflict`] if
    /// the store was set up with another number: events are placed by the count, so it
    /// cannot change while any are queued.
    async fn ensure_partitions(&self, count: u32) -> Result<(), StoreError>;

    /// Every partition's lease, in partition order.
    async fn leases(&self) -> Result<Vec<LeaseState>, StoreError>;

    /// Takes the partition's lease, under a new epoch, if nobody holds it or its lease
    /// expired before `now_ms`; `None` if another holder's lease runs.
    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;

    /// Extends a lease still held under its epoch; `None` if it was lost.
    async fn renew(
        &self,
        lease: &Lease,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;

    /// Gives a lease up at once (a clean hand-over: the next worker need not wait for
    /// its expiry). Nothing happens if it was lost already.
    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), StoreError>;

    /// Announces `owner` alive at `now_ms` and returns every worker announced within
    /// `ttl` before it (this one included), sorted.
    async fn heartbeat(
        &self,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Withdraws `owner`'s announcement (a clean stop).
    async fn leave(&self, owner: &str) -> Result<(), StoreError>;
}

/// The partitions a worker should hold: `count` shared as evenly as possible among
/// `workers` (sorted), the first ones taking one more when it does not divide.
pub fn fair_share(count: u32, workers: &[String], owner: &str) -> u32 {
    let n = workers.len().max(1) as u32;
    let rank = workers.iter().position(|w| w == owner).unwrap_or(0) as u32;
    count / n + u32::from(rank < count % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_adds_up_to_every_partition() {
        let workers: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        for count in [1, 2, 3, 4, 16, 17] {
            let total: u32 = workers.iter().map(|w| fair_share(count, &workers, w)).sum();
            assert_eq!(total, count);
        }
        assert_eq!(fair_share(16, &workers, "a"), 6);
        assert_eq!(fair_share(16, &workers, "c"), 5);
        // Before any heartbeat is stored, a worker counts itself as the only one.
        assert_eq!(fair_share(4, &[], "a"), 4);
    }
}
