//! [`IdCache`]: distinct id -> person, bounded. Two generations of hash maps: lookups
//! try the young one, then the old one (promoting what they find); when the young one
//! is full the old one is dropped and the young one takes its place. Memory stays
//! within twice the configured entries, and ids in use stay cached.

use std::collections::HashMap;

use appizer_core::{PersonId, ProjectId};

/// Bytes an entry costs besides its id's text: the key's box, the person id, the
/// project map's slot, hash table overhead.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Default)]
struct Generation {
    map: HashMap<ProjectId, HashMap<Box<str>, PersonId>>,
    entries: usize,
    bytes: usize,
}

impl Generation {
    fn get(&self, project: ProjectId, distinct_id: &str) -> Option<PersonId> {
        self.map.get(&project)?.get(distinct_id).copied()
    }

    fn insert(&mut self, project: ProjectId, distinct_id: &str, person: PersonId) {
        let ids = self.map.entry(project).or_default();
        if ids.insert(distinct_id.into(), person).is_none() {
            self.entries += 1;
            self.bytes += distinct_id.len() + ENTRY_OVERHEAD;
        }
    }

    fn remove(&mut self, project: ProjectId, distinct_id: &str) {
        if let Some(ids) = self.map.get_mut(&project) {
            if ids.remove(distinct_id).is_some() {
                self.entries -= 1;
                self.bytes -= distinct_id.len() + ENTRY_OVERHEAD;
            }
        }
    }
}

#[derive(Debug)]
pub struct IdCache {
    young: Generation,
    old: Generation,
    /// Entries per generation.
    capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

impl IdCache {
    /// A cache of at most about `2 * capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            young: Generation::default(),
            old: Generation::default(),
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, project: ProjectId, distinct_id: &str) -> Option<PersonId> {
        if let Some(p) = self.young.get(project, distinct_id) {
            self.hits += 1;
            return Some(p);
        }
        match self.old.get(project, distinct_id) {
            Some(p) => {
                self.hits += 1;
                self.insert(project, distinct_id, p);
                Some(p)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, project: ProjectId, distinct_id: &str, person: PersonId) {
        if self.young.entries >= self.capacity {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(project, distinct_id, person);
    }

    /// Forgets an id (after a merge, split or deletion changed its person).
    pub fn remove(&mut self, project: ProjectId, distinct_id: &str) {
        self.young.remove(project, distinct_id);
        self.old.remove(project, distinct_id);
    }

    /// Forgets every id of a project.
    pub fn clear_project(&mut self, project: ProjectId) {
        for generation in [&mut self.young, &mut self.old] {
            if let Some(ids) = generation.map.remove(&project) {
                generation.entries -= ids.len();
                generation.bytes -= ids.keys().map(|k| k.len() + ENTRY_OVERHEAD).sum::<usize>();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.young.entries + self.old.entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An estimate of the memory the cached ids take.
    pub fn bytes(&self) -> usize {
        self.young.bytes + self.old.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_two_generations_and_keeps_ids_in_use() {
        let project = ProjectId::new();
        let mut cache = IdCache::new(100);
        let hot = PersonId::new();
        cache.insert(project, "hot", hot);
        for i in 0..1_000 {
            cache.insert(project, &format!("id-{i}"), PersonId::new());
            // Used all along: promoted before its generation is dropped.
            assert_eq!(cache.get(project, "hot"), Some(hot));
            assert!(cache.len() <= 200);
        }
        assert_eq!(cache.get(project, "id-0"), None);
        assert!(cache.get(project, "id-999").is_some());
        assert!(cache.bytes() <= 200 * (ENTRY_OVERHEAD + 8));
    }

    #[test]
    fn ids_are_kept_apart_by_project_and_can_be_forgotten() {
        let (a, b) = (ProjectId::new(), ProjectId::new());
        let mut cache = IdCache::new(10);
        let p = PersonId::new();
        cache.insert(a, "u", p);
        assert_eq!(cache.get(b, "u"), None);
        cache.remove(a, "u");
        assert_eq!(cache.get(a, "u"), None);
        cache.insert(a, "u", p);
        cache.insert(a, "v", p);
        cache.clear_project(a);
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }
}
