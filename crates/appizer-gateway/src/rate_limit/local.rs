//! Token buckets in this process: a key has one bucket per [`LimitClass`], of `burst`
//! tokens refilled at the rate. The only buckets without Redis, and each node's own
//! while Redis is unreachable.

use std::time::Instant;

use parking_lot::Mutex;
use uuid::Uuid;

use super::{shard_of, Decision, LimitClass, SweptShard, SHARDS};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A shard holding this many buckets drops the ones that have refilled completely (their
/// state equals a fresh bucket's).
const SHARD_SWEEP_AT: usize = 4_096;

type Shard = SweptShard<Bucket, SHARD_SWEEP_AT>;

/// Token buckets for every active key, sharded to keep lock hold times short.
#[derive(Debug, Default)]
pub struct LocalBuckets {
    shards: [Mutex<Shard>; SHARDS],
}

impl LocalBuckets {
    /// Spends one token of `key`'s `class` bucket of `burst` tokens refilled at `rate` a
    /// second, at time `now`.
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
        shard.sweep_if_due(|b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
        });
        let bucket = shard.entries.entry((key, class)).or_insert(Bucket {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::rate_limit::Limits;

    const LIMITS: Limits = Limits {
        per_second: 2,
        burst: 3,
    };

    impl LocalBuckets {
        fn check(&self, key: Uuid, class: LimitClass, limits: Limits, now: Instant) -> Decision {
            self.spend(key, class, limits.rate(), limits.burst, now)
        }
    }

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_refill() {
        let limiter = LocalBuckets::default();
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
        let limiter = LocalBuckets::default();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(a, LimitClass::Api, LIMITS, t0);
        }
        assert!(!limiter.check(a, LimitClass::Api, LIMITS, t0).allowed);
        assert!(limiter.check(a, LimitClass::Ingest, LIMITS, t0).allowed);
        assert!(limiter.check(b, LimitClass::Api, LIMITS, t0).allowed);
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
        let limiter = LocalBuckets::default();
        let len = || limiter.shards[0].lock().entries.len();
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
