//! The Redis budgets' own tests, without a server; two nodes sharing a live Redis, and
//! Redis stopped and started under them, are `crates/appizer/tests/shared_limits.rs`.

use std::time::Duration;

use appizer_core::config::RedisLimitConfig;
use appizer_core::health::HealthRegistry;

use super::gcra::{interval_micros, Gcra};
use super::{LimitStoreError, RedisBuckets, RedisBucketsConfig, COMPONENT};
use crate::rate_limit::LimitClass;

#[test]
fn the_scripts_reply_becomes_the_answers_headers() {
    let admitted = Gcra::from_reply(&[1, 4, 1_200_000, 0]).unwrap();
    assert!(admitted.allowed);
    let d = admitted.decision(5);
    assert_eq!(
        (d.limit, d.remaining, d.reset_secs, d.retry_after_secs),
        (5, 4, 2, 0)
    );
    let refused = Gcra::from_reply(&[0, 0, 5_000_000, 20_000]).unwrap();
    let d = refused.decision(5);
    assert!(!d.allowed);
    assert_eq!((d.remaining, d.reset_secs), (0, 5));
    assert_eq!(d.retry_after_secs, 1, "a fraction of a second waits one");
    assert_eq!(refused.retry_after, Duration::from_millis(20));
    assert_eq!(
        Gcra::from_reply(&[1, 2, 3]),
        None,
        "another shape is refused"
    );
}

#[test]
fn the_interval_is_the_inverse_of_the_rate_in_microseconds() {
    assert_eq!(interval_micros(50.0), "20000.000");
    assert_eq!(interval_micros(3.0), "333333.333");
    assert_eq!(interval_micros(1.0 / 60.0), "60000000.000");
}

#[tokio::test]
async fn a_url_that_is_not_redis_is_refused_at_start() {
    let registry = HealthRegistry::new();
    let config = RedisBucketsConfig::new("http://127.0.0.1:6379", &RedisLimitConfig::default());
    let refused = RedisBuckets::open(config, registry.register(COMPONENT, Default::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LimitStoreError::InvalidUrl(_)),
        "{refused}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_leaves_the_budgets_down_and_the_component_degraded() {
    // Nothing listens on port 1.
    let registry = HealthRegistry::new();
    let section = RedisLimitConfig {
        retry_ms: 60_000,
        ..RedisLimitConfig::default()
    };
    let config = RedisBucketsConfig::new("redis://127.0.0.1:1", &section);
    let buckets = RedisBuckets::open(config, registry.register(COMPONENT, Default::default()))
        .await
        .expect("an unreachable server is not an error");
    assert!(!buckets.is_up());
    let degraded = registry.degraded();
    assert_eq!(degraded.len(), 1);
    assert_eq!(degraded[0].name, COMPONENT);
    let e = buckets
        .spend(uuid::Uuid::now_v7(), LimitClass::Api, 1.0, 1)
        .await
        .unwrap_err();
    assert!(matches!(e, LimitStoreError::Unavailable(_)), "{e}");
    assert!(registry.failing().is_empty(), "degraded, not failing");
}
