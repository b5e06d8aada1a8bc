//! Real-time counters: events per project, event name and minute, updated as the
//! workers store events, kept for 24 hours. Bounded: at most `MAX_NAMES_PER_MINUTE`
//! names per project and minute; further names count under `$other`.

use std::collections::{BTreeMap, HashMap};

use appizer_core::ProjectId;
use parking_lot::Mutex;

/// Minutes kept.
pub const RETENTION_MINUTES: i64 = 24 * 60;
/// Distinct event names counted per project and minute.
pub const MAX_NAMES_PER_MINUTE: usize = 1_000;
/// The name further names are counted under.
pub const OTHER: &str = "$other";

/// The oldest minute (since the epoch) the counters keep at `now_ms`.
pub fn first_kept_minute(now_ms: i64) -> i64 {
    now_ms.div_euclid(60_000) - RETENTION_MINUTES
}

#[derive(Debug, Default)]
pub struct Counters {
    /// (project, minute since the epoch) -> event name -> count.
    minutes: Mutex<BTreeMap<(ProjectId, i64), HashMap<String, u64>>>,
}

impl Counters {
    /// Counts one event of `name` at `at_ms`.
    pub fn record(&self, project: ProjectId, name: &str, at_ms: i64) {
        let minute = at_ms.div_euclid(60_000);
        let mut minutes = self.minutes.lock();
        let names = minutes.entry((project, minute)).or_default();
        if let Some(count) = names.get_mut(name) {
            *count += 1;
        } else if names.len() < MAX_NAMES_PER_MINUTE {
            names.insert(name.to_string(), 1);
        } else {
            *names.entry(OTHER.to_string()).or_default() += 1;
        }
    }

    /// Drops minutes older than the retention before `now_ms`.
    pub fn prune(&self, now_ms: i64) {
        let horizon = first_kept_minute(now_ms);
        self.minutes
            .lock()
            .retain(|(_, minute), _| *minute >= horizon);
    }

    /// Per event name, the counts of the minutes `[from_minute, to_minute]`.
    pub fn counts(
        &self,
        project: ProjectId,
        from_minute: i64,
        to_minute: i64,
    ) -> BTreeMap<String, BTreeMap<i64, u64>> {
        let minutes = self.minutes.lock();
        let mut out: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        for ((_, minute), names) in minutes.range((project, from_minute)..=(project, to_minute)) {
            for (name, count) in names {
                *out.entry(name.clone())
                    .or_default()
                    .entry(*minute)
                    .or_default() += count;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_name_and_minute_within_a_range() {
        let c = Counters::default();
        let (p, q) = (ProjectId::new(), ProjectId::new());
        c.record(p, "a", 60_000);
        c.record(p, "a", 119_999);
        c.record(p, "b", 120_000);
        c.record(q, "a", 60_000);
        let counts = c.counts(p, 1, 2);
        assert_eq!(counts["a"], BTreeMap::from([(1, 2)]));
        assert_eq!(counts["b"], BTreeMap::from([(2, 1)]));
        assert_eq!(c.counts(p, 2, 2).get("a"), None);
        assert_eq!(c.counts(q, 0, 10)["a"][&1], 1);
        c.prune((RETENTION_MINUTES + 3) * 60_000);
        assert!(c.counts(p, 0, 10).is_empty());
    }

    #[test]
    fn names_are_bounded_per_minute() {
        let c = Counters::default();
        let p = ProjectId::new();
        for i in 0..(MAX_NAMES_PER_MINUTE + 5) {
            c.record(p, &format!("e{i}"), 0);
        }
        let counts = c.counts(p, 0, 0);
        assert_eq!(counts.len(), MAX_NAMES_PER_MINUTE + 1);
        assert_eq!(counts[OTHER][&0], 5);
    }
}
