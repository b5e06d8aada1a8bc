//! When a delivery is tried again: exponential backoff from `push.retry_min_ms`,
//! doubling per attempt up to `push.retry_max_ms`, with "equal jitter" (a uniform draw
//! in the upper half of the step, so retries of one burst spread out but never come
//! sooner than half the step), and never sooner than the provider's `Retry-After`.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The step after attempt `attempt` (1 for the first) failed, before jitter.
    pub fn step(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.min
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(self.min)
    }

    /// How long to wait after attempt `attempt` failed, with jitter, honouring
    /// `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let step = self.step(attempt);
        let half = step / 2;
        let jitter = rand::rng().random_range(Duration::ZERO..=half);
        let delay = half + jitter;
        match retry_after {
            Some(after) => delay.max(after),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let b = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let steps: Vec<u64> = (1..=8).map(|a| b.step(a).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.step(1000), Duration::from_secs(60));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = b.delay(4, None);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 50, "jittered: {} distinct delays", seen.len());
        assert!(b.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(b.delay(8, Some(Duration::from_secs(1))) >= Duration::from_secs(30));
    }
}
