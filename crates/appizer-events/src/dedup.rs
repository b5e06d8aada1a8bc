//! Duplicate detection by message id within a time window (at least 24 hours). Keys are
//! 64-bit hashes of (project, message id); at 10 million ids in the window, the chance
//! that any two distinct ids collide is about 3 in a million. The set lives in memory
//! and is rebuilt at start from the Parquet files of the window, so it survives restarts.
//!
//! The ids are kept in generations of plain hash sets (8 bytes a slot, no timestamps).
//! `current` takes new ids; it is sealed once it is a window old, or once it is full at
//! [`SEAL_MIN_IDS`] ids or more (sealing instead of growing avoids the transient double
//! table of a resize, and keeps each table dense). A sealed generation is dropped whole
//! when its newest id is a window old. An id is therefore remembered for at least one
//! window and at most two; expiry costs nothing per id, and a lookup probes each
//! generation (one per ~3.7 million ids of the window).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::time::Duration;

use appizer_core::ProjectId;

/// Keys are already uniform hashes: the table uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than lose it.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdSet = HashSet<u64, BuildHasherDefault<PassThrough>>;

/// Below this many ids the current generation grows rather than being sealed.
pub const SEAL_MIN_IDS: usize = 2_000_000;

#[derive(Debug)]
struct Sealed {
    ids: IdSet,
    newest_ms: i64,
}

/// Seen message ids, in generations.
#[derive(Debug)]
pub struct Dedup {
    window_ms: i64,
    /// Ids first seen since `current_since_ms`.
    current: IdSet,
    current_since_ms: Option<i64>,
    current_newest_ms: i64,
    /// Older generations, oldest first; each holds an id seen less than a window ago.
    sealed: Vec<Sealed>,
    seal_min_ids: usize,
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
        Self::with_seal_min(window, SEAL_MIN_IDS)
    }

    fn with_seal_min(window: Duration, seal_min_ids: usize) -> Self {
        Self {
            seal_min_ids,
            window_ms: window.as_millis().max(1) as i64,
            current: IdSet::default(),
            current_since_ms: None,
            current_newest_ms: i64::MIN,
            sealed: Vec::new(),
        }
    }

    /// Records the id; `true` when it was not seen before `at_ms` within the window
    /// (ids are remembered for at least one window, at most two).
    pub fn first_sighting(&mut self, project: ProjectId, message_id: &str, at_ms: i64) -> bool {
        let since = *self.current_since_ms.get_or_insert(at_ms);
        let full = self.current.len() >= self.seal_min_ids
            && self.current.len() == self.current.capacity();
        if at_ms - since >= self.window_ms || full {
            let ids = std::mem::take(&mut self.current);
            if !ids.is_empty() {
                self.sealed.push(Sealed {
                    ids,
                    newest_ms: self.current_newest_ms,
                });
            }
            self.current_since_ms = Some(at_ms);
            self.current_newest_ms = i64::MIN;
        }
        let window = self.window_ms;
        if self
            .sealed
            .first()
            .is_some_and(|g| at_ms - g.newest_ms > window)
        {
            self.sealed.retain(|g| at_ms - g.newest_ms <= window);
        }
        let key = key(project, message_id);
        if self.sealed.iter().any(|g| g.ids.contains(&key)) {
            return false;
        }
        self.current_newest_ms = self.current_newest_ms.max(at_ms);
        self.current.insert(key)
    }

    /// Ids held (every generation).
    pub fn len(&self) -> usize {
        self.current.len() + self.sealed.iter().map(|g| g.ids.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Generations held (the current one included).
    pub fn generations(&self) -> usize {
        1 + self.sealed.len()
    }

    /// Bytes the sets' tables take (slots plus control bytes), for the memory figures.
    pub fn table_bytes(&self) -> usize {
        let slot = std::mem::size_of::<u64>() + 1;
        // A table's buckets are the power of two at or above 8/7 of its capacity.
        let buckets = |ids: &IdSet| match ids.capacity() {
            0 => 0,
            c => (c * 8 / 7).next_power_of_two(),
        };
        let sealed: usize = self.sealed.iter().map(|g| buckets(&g.ids)).sum();
        (buckets(&self.current) + sealed) * slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn ids_are_dropped_within_the_window_per_project() {
        let mut d = Dedup::new(Duration::from_secs(86_400));
        let (a, b) = (ProjectId::new(), ProjectId::new());
        assert!(d.first_sighting(a, "m1", 0));
        assert!(!d.first_sighting(a, "m1", 1_000));
        assert!(d.first_sighting(b, "m1", 1_000), "projects are apart");
        assert!(!d.first_sighting(a, "m1", DAY), "a full window later");
        assert!(
            !d.first_sighting(a, "m1", DAY + 1),
            "still held by the sealed generation"
        );
        assert!(
            d.first_sighting(a, "m1", 2 * DAY + 2),
            "two windows after the generation began it is new again"
        );
    }

    #[test]
    fn every_id_is_remembered_for_at_least_a_window() {
        let mut d = Dedup::new(Duration::from_millis(1_000));
        let p = ProjectId::new();
        // One id every 7 ms over 10 windows; each is checked again 999 ms after it came.
        for i in 0..1_430 {
            let at = i * 7;
            assert!(d.first_sighting(p, &format!("m{i}"), at));
            if at >= 999 {
                let earlier = (at - 999 + 6) / 7;
                assert!(
                    !d.first_sighting(p, &format!("m{earlier}"), at),
                    "m{earlier} forgotten at {at}"
                );
            }
        }
    }

    #[test]
    fn old_generations_are_dropped_whole() {
        let mut d = Dedup::new(Duration::from_millis(10));
        let p = ProjectId::new();
        for i in 0..1_000 {
            d.first_sighting(p, &i.to_string(), 0);
        }
        assert_eq!(d.len(), 1_000);
        d.first_sighting(p, "next", 10);
        assert_eq!(
            d.len(),
            1_001,
            "the first generation is sealed, not dropped"
        );
        d.first_sighting(p, "later", 20);
        assert_eq!(d.len(), 2, "a generation two windows old is gone");
        d.first_sighting(p, "much later", 1_000);
        assert_eq!(d.len(), 1);
        assert!(d.table_bytes() > 0);
    }

    #[test]
    fn a_full_generation_is_sealed_instead_of_grown() {
        let mut d = Dedup::with_seal_min(Duration::from_secs(86_400), 1_000);
        let p = ProjectId::new();
        for i in 0..10_000 {
            assert!(d.first_sighting(p, &format!("m{i}"), i));
        }
        assert!(d.generations() > 2, "{} generations", d.generations());
        assert_eq!(d.len(), 10_000);
        for i in (0..10_000).step_by(7) {
            assert!(!d.first_sighting(p, &format!("m{i}"), 10_000));
        }
        // Dense tables: no more than 8/7 of a slot per id, rounded to powers of two.
        assert!(d.table_bytes() <= 10_000 * 9 * 2, "{}", d.table_bytes());
    }
}
