//! GCRA (the generic cell rate algorithm) in one Redis script. A budget is one key
//! holding its theoretical arrival time (TAT, microseconds on the Redis server's clock):
//! each admitted request moves it one emission interval (`1 / rate`) later, and a
//! request is admitted while the TAT it would leave is at most `burst` intervals ahead
//! of now. That is the token bucket's behaviour (`burst` at once, then the rate) with
//! one number per key and class, read and written atomically by the script, on the one
//! clock every node shares. A refusal writes nothing; the key expires when the budget
//! is full again.

use std::time::Duration;

use super::super::{ceil_secs, Decision};

/// KEYS[1]: the budget's key; ARGV[1]: emission interval in microseconds (may be
/// fractional); ARGV[2]: burst. Returns {admitted (0|1), remaining, microseconds until
/// full, microseconds until one more is admitted (0 when admitted)}.
pub(super) const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > window then
  return {0, 0, math.ceil(tat - now), math.ceil(next_tat - now - window)}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
  math.max(1, math.ceil((next_tat - now) / 1000)))
return {1, math.floor((window - (next_tat - now)) / interval), math.ceil(next_tat - now), 0}
";

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub allowed: bool,
    pub remaining: u32,
    /// Until the budget is full again.
    pub reset: Duration,
    /// Until one more request is admitted (zero when this one was).
    pub retry_after: Duration,
}

impl Gcra {
    /// The script's four integers; `None` for any other shape.
    pub(super) fn from_reply(reply: &[i64]) -> Option<Self> {
        let &[allowed, remaining, reset_us, retry_us] = reply else {
            return None;
        };
        let micros = |n: i64| Duration::from_micros(n.max(0) as u64);
        Some(Self {
            allowed: allowed == 1,
            remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            reset: micros(reset_us),
            retry_after: micros(retry_us),
        })
    }

    /// The answer's headers for a budget of `burst`.
    pub fn decision(&self, burst: u32) -> Decision {
        Decision {
            allowed: self.allowed,
            limit: burst,
            remaining: self.remaining,
            reset_secs: ceil_secs(self.reset),
            retry_after_secs: if self.allowed {
                0
            } else {
                ceil_secs(self.retry_after).max(1)
            },
        }
    }
}

/// The script's ARGV[1] for `rate` requests a second.
pub(super) fn interval_micros(rate: f64) -> String {
    format!("{:.3}", 1e6 / rate.max(1e-6))
}
