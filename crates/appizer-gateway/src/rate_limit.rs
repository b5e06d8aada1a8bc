//! Per-key token buckets. A key has one bucket per [`LimitClass`]; its size is the burst
//! and it refills at the sustained rate, both from `[rate_limit]` unless the key's project
//! overrides them. Answers carry `X-RateLimit-Limit` (the bucket size),
//! `X-RateLimit-Remaining` (whole tokens left) and `X-RateLimit-Reset` (seconds until the
//! bucket is full again); a refusal also carries `Retry-After` (seconds until one token).

use std::collections::HashMap;
use std::time::Instant;

use appizer_core::config::RateLimitConfig;
use appizer_core::tenancy::RateLimitOverride;
use axum::http::{HeaderMap, HeaderValue};
use parking_lot::Mutex;
use uuid::Uuid;

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Management API requests (secret keys).
    Api,
    /// Ingestion requests (write keys).
    Ingest,
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
}

/// The outcome of spending one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full.
    pub reset_secs: u64,
    /// Seconds until one token is available (0 when allowed).
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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

const SHARDS: usize = 16;
/// A shard holding this many buckets drops the ones that have refilled completely (their
/// state equals a fresh bucket's), so memory follows active keys only. The next sweep
/// waits until the shard doubles, which keeps sweeping amortised O(1) per request.
const SHARD_SWEEP_AT: usize = 4_096;

#[derive(Debug)]
struct Shard {
    buckets: HashMap<(Uuid, LimitClass), Bucket>,
    sweep_at: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            sweep_at: SHARD_SWEEP_AT,
        }
    }
}

/// Token buckets for every active key, sharded to keep lock hold times short.
#[derive(Debug, Default)]
pub struct RateLimiter {
    shards: [Mutex<Shard>; SHARDS],
}

impl RateLimiter {
    /// Spends one token of `key`'s `class` bucket at time `now` (`key`: the key's or
    /// member's id).
    pub fn check(&self, key: Uuid, class: LimitClass, limits: Limits, now: Instant) -> Decision {
        self.spend(
            key,
            class,
            f64::from(limits.per_second.max(1)),
            limits.burst,
            now,
        )
    }

    /// Spends one token of a bucket of `burst` tokens refilled at `rate` a second (sign-in
    /// spends these, keyed by digests of the account and of the address).
    pub fn spend(
        &self,
        key: Uuid,
        class: LimitClass,
        rate: f64,
        burst: u32,
        now: Instant,
    ) -> Decision {
        let limit = burst;
        let burst = f64::from(burst.max(1));
        let shard = &self.shards[shard_of(key)];
        let mut shard = shard.lock();
        if shard.buckets.len() >= shard.sweep_at {
            shard.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
            shard.sweep_at = (shard.buckets.len() * 2).max(SHARD_SWEEP_AT);
        }
        let bucket = shard.buckets.entry((key, class)).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let tokens = bucket.tokens;
        drop(shard);
        Decision {
            allowed,
            limit,
            remaining: tokens.floor() as u32,
            reset_secs: ((burst - tokens) / rate).ceil() as u64,
            retry_after_secs: if allowed {
                0
            } else {
                ((1.0 - tokens) / rate).ceil().max(1.0) as u64
            },
        }
    }
}

fn shard_of(key: Uuid) -> usize {
    // The low bits of a v7 UUID (and of a digest) are random.
    (key.as_u128() % SHARDS as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        per_second: 2,
        burst: 3,
    };

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_refill() {
        let limiter = RateLimiter::default();
        let key = uuid::Uuid::now_v7();
        let t0 = Instant::now();
        let remaining: Vec<u32> = (0..3)
            .map(|_| limiter.check(key, LimitClass::Api, LIMITS, t0))
            .inspect(|d| assert!(d.allowed))
            .map(|d| d.remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check(key, LimitClass::Api, LIMITS, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(refused.reset_secs, 2, "3 tokens at 2/s");
        // Half a second refills one token at 2/s.
        let later = t0 + Duration::from_millis(500);
        assert!(limiter.check(key, LimitClass::Api, LIMITS, later).allowed);
        assert!(!limiter.check(key, LimitClass::Api, LIMITS, later).allowed);
    }

    #[test]
    fn keys_and_classes_have_their_own_buckets() {
        let limiter = RateLimiter::default();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(a, LimitClass::Api, LIMITS, t0);
        }
        assert!(!limiter.check(a, LimitClass::Api, LIMITS, t0).allowed);
        assert!(limiter.check(a, LimitClass::Ingest, LIMITS, t0).allowed);
        assert!(limiter.check(b, LimitClass::Api, LIMITS, t0).allowed);
    }

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

    fn key_in_shard_zero() -> Uuid {
        loop {
            let key = uuid::Uuid::now_v7();
            if shard_of(key) == 0 {
                return key;
            }
        }
    }

    #[test]
    fn idle_full_buckets_are_swept_and_active_ones_kept() {
        let limiter = RateLimiter::default();
        let len = || limiter.shards[0].lock().buckets.len();
        let t0 = Instant::now();
        for _ in 0..SHARD_SWEEP_AT {
            limiter.check(key_in_shard_zero(), LimitClass::Api, LIMITS, t0);
        }
        // At the threshold, a sweep finds only active buckets and keeps them all.
        limiter.check(key_in_shard_zero(), LimitClass::Api, LIMITS, t0);
        assert_eq!(len(), SHARD_SWEEP_AT + 1);
        // The next sweep waits for the shard to double...
        while len() < SHARD_SWEEP_AT * 2 {
            limiter.check(key_in_shard_zero(), LimitClass::Api, LIMITS, t0);
        }
        // ...and, once every bucket has refilled, drops them all.
        let later = t0 + Duration::from_secs(10);
        limiter.check(key_in_shard_zero(), LimitClass::Api, LIMITS, later);
        assert_eq!(len(), 1);
    }
}
