//! Duplicate detection by message id within a time window (at least 24 hours). Keys are
//! 64-bit hashes of (project, message id); at 10 million ids in the window, the chance
//! that any two distinct ids collide is about 3 in a million. The set lives in memory
//! and is rebuilt at start from the Parquet files of the window, so it survives restarts.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use appizer_core::ProjectId;

/// Seen message ids with the time they were received.
#[derive(Debug)]
pub struct Dedup {
    window_ms: i64,
    seen: HashMap<u64, i64>,
    next_sweep_len: usize,
}

fn key(project: ProjectId, message_id: &str) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same input hashes alike in every run.
    let mut h = DefaultHasher::new();
    project.as_uuid().hash(&mut h);
    message_id.hash(&mut h);
    h.finish()
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            window_ms: window.as_millis() as i64,
            seen: HashMap::new(),
            next_sweep_len: 1 << 16,
        }
    }

    /// Records the id; `true` when it was not seen within the window before `at_ms`.
    pub fn first_sighting(&mut self, project: ProjectId, message_id: &str, at_ms: i64) -> bool {
        if self.seen.len() >= self.next_sweep_len {
            let horizon = at_ms - self.window_ms;
            self.seen.retain(|_, seen| *seen >= horizon);
            self.next_sweep_len = (self.seen.len() * 2).max(1 << 16);
        }
        // The window counts from the first sighting.
        match self.seen.entry(key(project, message_id)) {
            Entry::Occupied(seen) if at_ms - *seen.get() <= self.window_ms => false,
            Entry::Occupied(mut expired) => {
                expired.insert(at_ms);
                true
            }
            Entry::Vacant(new) => {
                new.insert(at_ms);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dropped_within_the_window_per_project() {
        let mut d = Dedup::new(Duration::from_secs(86_400));
        let (a, b) = (ProjectId::new(), ProjectId::new());
        assert!(d.first_sighting(a, "m1", 0));
        assert!(!d.first_sighting(a, "m1", 1_000));
        assert!(d.first_sighting(b, "m1", 1_000), "projects are apart");
        assert!(
            !d.first_sighting(a, "m1", 86_400_000),
            "the window counts from the first"
        );
        assert!(
            d.first_sighting(a, "m1", 86_400_001),
            "past the window it is new again"
        );
    }

    #[test]
    fn old_ids_are_swept_as_the_set_grows() {
        let mut d = Dedup::new(Duration::from_millis(10));
        let p = ProjectId::new();
        for i in 0..(1 << 16) {
            d.first_sighting(p, &i.to_string(), 0);
        }
        d.first_sighting(p, "late", 1_000);
        assert_eq!(d.len(), 1);
    }
}
