//! Rate limits per key. A key has one budget per [`LimitClass`]: `burst` requests at
//! once, then the sustained rate, both from `[rate_limit]` unless the key's project
//! overrides them. Answers carry `X-RateLimit-Limit` (the burst),
//! `X-RateLimit-Remaining` (whole requests left now) and `X-RateLimit-Reset` (seconds
//! until the budget is full again); a refusal also carries `Retry-After` (seconds until
//! one more request is admitted).
//!
//! Where the budgets live is chosen by `rate_limit.shared_url`'s scheme: in this
//! process ([`local`], token buckets), or in Redis ([`redis`], GCRA in one script, so
//! every node pointed at it spends the same budget). With Redis, a refusal is kept here
//! until its retry time (a refusal changes nothing in Redis, so until then the answer
//! is the same) and refused again without a round trip; while Redis is unreachable the
//! node decides with its local buckets, counted in
//! `appizer_rate_limit_local_fallback_total` and reported degraded in `/readyz`.

pub mod local;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use appizer_core::config::RateLimitConfig;
use appizer_core::health::HealthRegistry;
use appizer_core::tenancy::RateLimitOverride;
use axum::http::{HeaderMap, HeaderValue};
use parking_lot::Mutex;
use uuid::Uuid;

use self::local::LocalBuckets;
use self::redis::{Gcra, RedisBuckets};

/// Decisions taken by this node's buckets because Redis was unreachable.
pub const LOCAL_FALLBACK_TOTAL: &str = "appizer_rate_limit_local_fallback_total";

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Management API requests (secret keys).
    Api,
    /// Ingestion requests (write keys).
    Ingest,
}

impl LimitClass {
    pub fn name(self) -> &'static str {
        match self {
            LimitClass::Api => "api",
            LimitClass::Ingest => "ingest",
        }
    }
}

/// The rate and burst applying to one key and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_second: u32,
    pub burst: u32,
}

impl Limits {
    /// The configured defaults for `class`, overridden by the project's settings.
    pub fn resolve(
        config: &RateLimitConfig,
        project: &RateLimitOverride,
        class: LimitClass,
    ) -> Self {
        match class {
            LimitClass::Api => Limits {
                per_second: project.api_per_second.unwrap_or(config.api_per_second),
                burst: project.api_burst.unwrap_or(config.api_burst),
            },
            LimitClass::Ingest => Limits {
                per_second: project
                    .ingest_per_second
                    .unwrap_or(config.ingest_per_second),
                burst: project.ingest_burst.unwrap_or(config.ingest_burst),
            },
        }
    }

    /// Requests a second.
    pub fn rate(&self) -> f64 {
        f64::from(self.per_second.max(1))
    }
}

/// The outcome of spending one request of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the budget is full.
    pub reset_secs: u64,
    /// Seconds until one more request is admitted (0 when allowed).
    pub retry_after_secs: u64,
}

impl Decision {
    /// Writes the `X-RateLimit-*` headers (and `Retry-After` on refusal).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs));
        if !self.allowed {
            headers.insert("retry-after", HeaderValue::from(self.retry_after_secs));
        }
    }
}

/// Shards of the maps keyed by key id, to keep lock hold times short.
const SHARDS: usize = 16;

fn shard_of(key: Uuid) -> usize {
    // The low bits of a v7 UUID (and of a digest) are random.
    (key.as_u128() % SHARDS as u128) as usize
}

/// One shard of a map keyed by key id and class that is swept as it grows: holding
/// `sweep_at` entries, it drops the ones that carry no state worth keeping before the
/// next is added, and the next sweep waits until what it kept doubles (at least
/// `FLOOR`). Sweeping stays amortised O(1) per addition and memory follows the active
/// keys only.
#[derive(Debug)]
struct SweptShard<V, const FLOOR: usize> {
    entries: HashMap<(Uuid, LimitClass), V>,
    sweep_at: usize,
}

impl<V, const FLOOR: usize> Default for SweptShard<V, FLOOR> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            sweep_at: FLOOR,
        }
    }
}

impl<V, const FLOOR: usize> SweptShard<V, FLOOR> {
    /// When the shard is due, keeps only the entries `keep` accepts.
    fn sweep_if_due(&mut self, mut keep: impl FnMut(&V) -> bool) {
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|_, v| keep(v));
            self.sweep_at = (self.entries.len() * 2).max(FLOOR);
        }
    }
}

/// How many decisions each path took (for tests and benchmarks; `/metrics` counts the
/// fallbacks too).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LimiterStats {
    /// Decided by Redis.
    pub shared: u64,
    /// Refused from the kept refusals, without asking Redis.
    pub kept_refusals: u64,
    /// Decided locally because Redis was unreachable.
    pub local_fallbacks: u64,
}

/// A refusal Redis gave, kept until one more request could be admitted.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    limit: u32,
    retry_at: Instant,
    full_at: Instant,
}

/// A kept-refusals shard is swept of expired refusals from this size on.
const REFUSALS_SWEEP_AT: usize = 1_024;

/// Every key's budgets: local buckets, or Redis with the local buckets as fallback.
#[derive(Debug, Default)]
pub struct RateLimiter {
    local: LocalBuckets,
    shared: Option<RedisBuckets>,
    refusals: [Mutex<SweptShard<Refusal, REFUSALS_SWEEP_AT>>; SHARDS],
    decided_shared: AtomicU64,
    kept_refusals: AtomicU64,
    local_fallbacks: AtomicU64,
}

impl RateLimiter {
    /// Budgets in this process only.
    pub fn local() -> Self {
        Self::default()
    }

    /// The budgets `config.shared_url` names. With Redis, this connects (reporting the
    /// component `rate_limit` in `health`); an unreachable Redis is not an error: the
    /// node starts on its local buckets and keeps trying.
    pub async fn open(
        config: &RateLimitConfig,
        health: &HealthRegistry,
    ) -> Result<Self, redis::LimitStoreError> {
        let url = config.shared_url.expose();
        if url.is_empty() {
            return Ok(Self::local());
        }
        let shared = RedisBuckets::open(
            redis::RedisBucketsConfig::new(url, &config.redis),
            health.register(redis::COMPONENT, Default::default()),
        )
        .await?;
        Ok(Self {
            shared: Some(shared),
            ..Self::default()
        })
    }

    /// Spends one request of `key`'s `class` budget at time `now` (`key`: the key's or
    /// member's id).
    pub async fn check(
        &self,
        key: Uuid,
        class: LimitClass,
        limits: Limits,
        now: Instant,
    ) -> Decision {
        self.spend(key, class, limits.rate(), limits.burst, now)
            .await
    }

    /// Spends one request of a budget of `burst` refilled at `rate` a second (sign-in
    /// spends these, keyed by digests of the account and of the address).
    pub async fn spend(
        &self,
        key: Uuid,
        class: LimitClass,
        rate: f64,
        burst: u32,
        now: Instant,
    ) -> Decision {
        let Some(shared) = &self.shared else {
            return self.local.spend(key, class, rate, burst, now);
        };
        if let Some(kept) = self.kept_refusal(key, class, now) {
            self.kept_refusals.fetch_add(1, Ordering::Relaxed);
            return kept;
        }
        match shared.spend(key, class, rate, burst).await {
            Ok(gcra) => {
                self.decided_shared.fetch_add(1, Ordering::Relaxed);
                if !gcra.allowed {
                    self.keep_refusal(key, class, burst, &gcra, now);
                }
                gcra.decision(burst)
            }
            Err(_) => {
                self.local_fallbacks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(LOCAL_FALLBACK_TOTAL).increment(1);
                self.local.spend(key, class, rate, burst, now)
            }
        }
    }

    /// Whether budgets are shared through Redis and it answers now.
    pub fn shared_up(&self) -> Option<bool> {
        self.shared.as_ref().map(RedisBuckets::is_up)
    }

    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            shared: self.decided_shared.load(Ordering::Relaxed),
            kept_refusals: self.kept_refusals.load(Ordering::Relaxed),
            local_fallbacks: self.local_fallbacks.load(Ordering::Relaxed),
        }
    }

    fn kept_refusal(&self, key: Uuid, class: LimitClass, now: Instant) -> Option<Decision> {
        let mut shard = self.refusals[shard_of(key)].lock();
        let refusal = *shard.entries.get(&(key, class))?;
        if now >= refusal.retry_at {
            shard.entries.remove(&(key, class));
            return None;
        }
        Some(Decision {
            allowed: false,
            limit: refusal.limit,
            remaining: 0,
            reset_secs: ceil_secs(refusal.full_at.saturating_duration_since(now)),
            retry_after_secs: ceil_secs(refusal.retry_at.saturating_duration_since(now)).max(1),
        })
    }

    fn keep_refusal(&self, key: Uuid, class: LimitClass, burst: u32, gcra: &Gcra, now: Instant) {
        let mut shard = self.refusals[shard_of(key)].lock();
        shard.sweep_if_due(|r| r.retry_at > now);
        shard.entries.insert(
            (key, class),
            Refusal {
                limit: burst,
                retry_at: now + gcra.retry_after,
                full_at: now + gcra.reset,
            },
        );
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_overrides_replace_config_values_one_by_one() {
        let config = RateLimitConfig::default();
        let project = RateLimitOverride {
            api_burst: Some(7),
            ..Default::default()
        };
        let api = Limits::resolve(&config, &project, LimitClass::Api);
        assert_eq!(api.burst, 7);
        assert_eq!(api.per_second, config.api_per_second);
        let ingest = Limits::resolve(&config, &project, LimitClass::Ingest);
        assert_eq!(ingest.burst, config.ingest_burst);
    }

    #[test]
    fn a_kept_refusal_answers_until_its_retry_time_and_expired_ones_are_swept() {
        let limiter = RateLimiter::local();
        let (key, now) = (Uuid::now_v7(), Instant::now());
        let gcra = Gcra {
            allowed: false,
            remaining: 0,
            reset: Duration::from_millis(2_500),
            retry_after: Duration::from_millis(100),
        };
        limiter.keep_refusal(key, LimitClass::Ingest, 7, &gcra, now);
        let kept = limiter
            .kept_refusal(key, LimitClass::Ingest, now + Duration::from_millis(50))
            .expect("refused until the retry time");
        assert!(!kept.allowed);
        assert_eq!(
            (kept.limit, kept.retry_after_secs, kept.reset_secs),
            (7, 1, 3)
        );
        assert!(limiter.kept_refusal(key, LimitClass::Api, now).is_none());
        let later = now + Duration::from_millis(100);
        assert!(limiter
            .kept_refusal(key, LimitClass::Ingest, later)
            .is_none());
        assert!(limiter.refusals[shard_of(key)].lock().entries.is_empty());

        // A full shard of expired refusals is swept by the next one kept.
        let shard = shard_of(key);
        let mut filled = 0;
        while filled < REFUSALS_SWEEP_AT {
            let other = Uuid::now_v7();
            if shard_of(other) == shard {
                limiter.keep_refusal(other, LimitClass::Api, 1, &gcra, now);
                filled += 1;
            }
        }
        limiter.keep_refusal(key, LimitClass::Api, 1, &gcra, later);
        assert_eq!(limiter.refusals[shard].lock().entries.len(), 1);
    }

    #[tokio::test]
    async fn without_a_shared_url_each_process_keeps_its_own_budgets() {
        let limiter = RateLimiter::open(&RateLimitConfig::default(), &HealthRegistry::new())
            .await
            .unwrap();
        assert_eq!(limiter.shared_up(), None);
        let limits = Limits {
            per_second: 1,
            burst: 2,
        };
        let (key, now) = (Uuid::now_v7(), Instant::now());
        let allowed: Vec<bool> = [0; 3]
            .iter()
            .map(|_| {
                limiter
                    .local
                    .spend(key, LimitClass::Api, 1.0, 2, now)
                    .allowed
            })
            .collect();
        assert_eq!(allowed, [true, true, false]);
        assert!(
            !limiter
                .check(key, LimitClass::Api, limits, now)
                .await
                .allowed
        );
        assert_eq!(limiter.stats(), LimiterStats::default());
    }
}
