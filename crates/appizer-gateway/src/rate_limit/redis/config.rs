//! The Redis budgets' settings, from `rate_limit.shared_url` and `[rate_limit.redis]`.

use std::time::Duration;

use appizer_core::config::RedisLimitConfig;

/// Where the budgets live and how long a decision waits for them.
#[derive(Debug, Clone)]
pub struct RedisBucketsConfig {
    /// `redis://[user:password@]HOST:PORT[/DB]`.
    pub url: String,
    /// A decision (and a connection attempt) waits this long, then is taken locally.
    pub timeout: Duration,
    /// After a failure, decisions are local for this long before Redis is tried again.
    pub retry: Duration,
    /// Prefix of every key written.
    pub key_prefix: String,
}

impl RedisBucketsConfig {
    pub fn new(url: &str, section: &RedisLimitConfig) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_millis(section.timeout_ms),
            retry: Duration::from_millis(section.retry_ms),
            key_prefix: section.key_prefix.clone(),
        }
    }
}
