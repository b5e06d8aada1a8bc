//! Budgets in Redis, shared by every node pointed at it: one GCRA script call per
//! decision ([`gcra`]), over one multiplexed connection (concurrent decisions are
//! pipelined on it).
//!
//! Guarantees: while Redis answers, all nodes together admit at most `burst` plus the
//! rate times the time elapsed, on Redis's clock. Not guaranteed: a decision that gets
//! no answer within `timeout` is taken by the node's local buckets, and after a failure
//! the node decides locally for `retry` before one background attempt to reconnect; so
//! while Redis is unreachable each node admits up to the whole budget on its own. The
//! `rate_limit` health component is degraded meanwhile.

mod config;
mod errors;
mod gcra;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use appizer_core::health::HealthReporter;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

pub use self::config::RedisBucketsConfig;
pub use self::errors::LimitStoreError;
pub use self::gcra::Gcra;
use super::LimitClass;

/// The health component the shared budgets report as.
pub const COMPONENT: &str = "rate_limit";

/// The connection, or when to try again.
enum Link {
    Up(MultiplexedConnection),
    Down { retry_at: Instant, connecting: bool },
}

struct Inner {
    client: redis::Client,
    config: RedisBucketsConfig,
    script: redis::Script,
    link: Mutex<Link>,
    health: HealthReporter,
}

/// The shared budgets (cloned handles share the connection).
#[derive(Clone)]
pub struct RedisBuckets(Arc<Inner>);

impl std::fmt::Debug for RedisBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBuckets")
            .field("key_prefix", &self.0.config.key_prefix)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisBuckets {
    /// Connects to `config.url`. Only a URL it cannot use is an error: an unreachable
    /// server leaves the budgets down (decisions local) until a later attempt succeeds.
    pub async fn open(
        config: RedisBucketsConfig,
        health: HealthReporter,
    ) -> Result<Self, LimitStoreError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| LimitStoreError::InvalidUrl(e.to_string()))?;
        let buckets = Self(Arc::new(Inner {
            client,
            config,
            script: redis::Script::new(gcra::SCRIPT),
            link: Mutex::new(Link::Down {
                retry_at: Instant::now(),
                connecting: true,
            }),
            health,
        }));
        buckets.connect().await;
        if !buckets.is_up() {
            tracing::warn!("Redis for the shared rate limits is unreachable; each node limits on its own until it answers");
        }
        Ok(buckets)
    }

    /// Whether the connection is up (the last decision got its answer).
    pub fn is_up(&self) -> bool {
        matches!(*self.0.link.lock(), Link::Up(_))
    }

    /// Spends one request of `key`'s `class` budget of `burst` at `rate` a second.
    pub async fn spend(
        &self,
        key: Uuid,
        class: LimitClass,
        rate: f64,
        burst: u32,
    ) -> Result<Gcra, LimitStoreError> {
        let mut connection = self.connection()?;
        let inner = &self.0;
        let reply = inner
            .script
            .key(format!(
                "{}{}:{}",
                inner.config.key_prefix,
                class.name(),
                key
            ))
            .arg(gcra::interval_micros(rate))
            .arg(burst.max(1))
            .invoke_async::<Vec<i64>>(&mut connection)
            .await;
        let outcome = match reply {
            Ok(reply) => Gcra::from_reply(&reply).ok_or_else(|| {
                LimitStoreError::Unavailable(format!("unexpected script reply {reply:?}"))
            }),
            Err(e) => Err(errors::unavailable(&e)),
        };
        if let Err(e) = &outcome {
            self.fail(e);
        }
        outcome
    }

    /// The connection, or (while down) the error; past the retry time, the first caller
    /// starts one reconnection in the background and still decides locally.
    fn connection(&self) -> Result<MultiplexedConnection, LimitStoreError> {
        let mut link = self.0.link.lock();
        match &mut *link {
            Link::Up(connection) => Ok(connection.clone()),
            Link::Down {
                retry_at,
                connecting,
            } => {
                if !*connecting && Instant::now() >= *retry_at {
                    *connecting = true;
                    let this = self.clone();
                    tokio::spawn(async move { this.connect().await });
                }
                Err(LimitStoreError::Unavailable(
                    "Redis was unreachable; deciding locally until it answers again".into(),
                ))
            }
        }
    }

    async fn connect(&self) {
        let inner = &self.0;
        let settings = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(inner.config.timeout.max(inner.config.retry)))
            .set_response_timeout(Some(inner.config.timeout));
        match inner
            .client
            .get_multiplexed_async_connection_with_config(&settings)
            .await
        {
            Ok(connection) => {
                *inner.link.lock() = Link::Up(connection);
                inner.health.ok();
                tracing::info!("rate limits shared through Redis");
            }
            Err(e) => self.fail(&errors::unavailable(&e)),
        }
    }

    /// Marks the link down until the retry time (once per outage in the log).
    fn fail(&self, error: &LimitStoreError) {
        let inner = &self.0;
        let was_up = {
            let mut link = inner.link.lock();
            let was_up = matches!(*link, Link::Up(_));
            *link = Link::Down {
                retry_at: Instant::now() + inner.config.retry,
                connecting: false,
            };
            was_up
        };
        inner.health.degraded(&format!(
            "{error}; rate limits are decided by each node's own buckets"
        ));
        if was_up {
            tracing::warn!(error = %error, "Redis unreachable; rate limits are local until it answers");
        }
    }
}
