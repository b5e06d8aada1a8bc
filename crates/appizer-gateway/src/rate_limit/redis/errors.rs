//! How Redis's failures reach the limiter: a URL it cannot use is refused when the
//! node starts; anything else makes the decision local ([`LimitStoreError::Unavailable`]).

/// Why the shared budgets could not decide.
#[derive(Debug, thiserror::Error)]
pub enum LimitStoreError {
    #[error("rate_limit.shared_url is not a Redis URL this node can use: {0}")]
    InvalidUrl(String),
    #[error("Redis is unreachable: {0}")]
    Unavailable(String),
}

pub(super) fn unavailable(e: &::redis::RedisError) -> LimitStoreError {
    if e.is_timeout() {
        LimitStoreError::Unavailable("no answer within rate_limit.redis.timeout_ms".into())
    } else {
        LimitStoreError::Unavailable(e.to_string())
    }
}
