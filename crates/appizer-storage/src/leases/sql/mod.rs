//! [`LeaseStore`] over SQL, in the dialect SQLite and PostgreSQL both accept, and the
//! fence check the catalog and person writes run inside their own transactions.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{Fence, Lease, LeaseState, LeaseStore};
use crate::metadata::Backend;
use crate::StoreError;

#[derive(Debug, Clone)]
pub struct SqlLeaseStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlLeaseStore {
    /// A lease store over the metadata store's pool (its migrations create the tables).
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Fails with [`StoreError::Fenced`] unless the fence's partition is still held at its
/// epoch. Run inside the transaction of the write it guards: on PostgreSQL the lease
/// row is locked for share until that transaction ends, so a takeover (an update of
/// the row) waits for the write to commit and then sees it; SQLite's writes are
/// serialised by `BEGIN IMMEDIATE`.
pub(crate) async fn check_fence(
    conn: &mut AnyConnection,
    backend: Backend,
    fence: Fence,
) -> Result<(), StoreError> {
    let Some(epoch) = fence.epoch else {
        return Ok(());
    };
    let lock = match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    };
    let held: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT epoch FROM partition_leases WHERE queue_partition = $1{lock}"
    ))
    .bind(i64::from(fence.partition))
    .fetch_optional(&mut *conn)
    .await?;
    if held == Some(epoch as i64) {
        return Ok(());
    }
    Err(StoreError::Fenced(format!(
        "partition {} is held under epoch {}, not {epoch}",
        fence.partition,
        held.map_or_else(|| "none".to_string(), |e| e.to_string()),
    )))
}

#[async_trait]
impl LeaseStore for SqlLeaseStore {
    async fn ensure_partitions(&self, count: u32) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write(&self.pool).await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM partition_leases")
            .fetch_one(&mut *tx)
            .await?;
        if existing == 0 {
            for partition in 0..count {
                sqlx::query(
                    "INSERT INTO partition_leases (queue_partition, owner, epoch, expires_at) \
                     VALUES ($1, NULL, 0, 0) ON CONFLICT (queue_partition) DO NOTHING",
                )
                .bind(i64::from(partition))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok(());
        }
        if existing != i64::from(count) {
            return Err(StoreError::Conflict(format!(
                "the event queue was set up with {existing} partitions, not {count}: \
                 the count cannot change while events are queued"
            )));
        }
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<LeaseState>, StoreError> {
        let rows = sqlx::query(
            "SELECT queue_partition, owner, epoch, expires_at FROM partition_leases \
             ORDER BY queue_partition",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LeaseState {
                    partition: row.try_get::<i64, _>("queue_partition")? as u32,
                    owner: row.try_get("owner")?,
                    epoch: row.try_get::<i64, _>("epoch")? as u64,
                    expires_at_ms: row.try_get("expires_at")?,
                })
            })
            .collect()
    }

    async fn acquire(
        &self,
        partition: u32,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let expires_at_ms = now_ms.saturating_add(ttl_ms(ttl));
        let mut tx = self.backend.begin_write(&self.pool).await?;
        // On PostgreSQL a concurrent taker waits for this row and then finds it held.
        let taken = sqlx::query(
            "UPDATE partition_leases SET owner = $1, epoch = epoch + 1, expires_at = $2 \
             WHERE queue_partition = $3 AND (owner IS NULL OR expires_at < $4)",
        )
        .bind(owner)
        .bind(expires_at_ms)
        .bind(i64::from(partition))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() != 1 {
            return Ok(None);
        }
        let epoch: i64 =
            sqlx::query_scalar("SELECT epoch FROM partition_leases WHERE queue_partition = $1")
                .bind(i64::from(partition))
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(Lease {
            partition,
            epoch: epoch as u64,
            expires_at_ms,
        }))
    }

    async fn renew(
        &self,
        lease: &Lease,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let expires_at_ms = now_ms.saturating_add(ttl_ms(ttl));
        let renewed = sqlx::query(
            "UPDATE partition_leases SET expires_at = $1 \
             WHERE queue_partition = $2 AND epoch = $3 AND owner = $4",
        )
        .bind(expires_at_ms)
        .bind(i64::from(lease.partition))
        .bind(lease.epoch as i64)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok((renewed.rows_affected() == 1).then_some(Lease {
            expires_at_ms,
            ..*lease
        }))
    }

    async fn release(&self, lease: &Lease, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE partition_leases SET owner = NULL, expires_at = 0 \
             WHERE queue_partition = $1 AND epoch = $2 AND owner = $3",
        )
        .bind(i64::from(lease.partition))
        .bind(lease.epoch as i64)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "INSERT INTO queue_workers (owner, seen_at) VALUES ($1, $2) \
             ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(owner)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        let since = now_ms.saturating_sub(ttl_ms(ttl));
        // Long-gone workers are forgotten, so the table stays as small as the cluster.
        sqlx::query("DELETE FROM queue_workers WHERE seen_at < $1")
            .bind(since.saturating_sub(ttl_ms(ttl) * 10))
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar(
                "SELECT owner FROM queue_workers WHERE seen_at >= $1 ORDER BY owner",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn leave(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM queue_workers WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
