//! The memory pool of one query: DataFusion's greedy pool (refusing what would pass
//! the limit, so the query fails with a limit error instead of the server growing),
//! counting the most it held at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

#[derive(Debug)]
pub struct PeakPool {
    inner: GreedyMemoryPool,
    peak: AtomicUsize,
}

impl PeakPool {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: GreedyMemoryPool::new(limit),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most reserved at once so far, in bytes.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn note(&self) {
        self.peak
            .fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

impl std::fmt::Display for PeakPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peak pool ({} bytes at most at once)", self.peak())
    }
}

impl MemoryPool for PeakPool {
    fn name(&self) -> &str {
        "peak"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.note();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.inner.try_grow(reservation, additional)?;
        self.note();
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_pool_refuses_past_its_limit_and_remembers_its_peak() {
        let concrete = Arc::new(PeakPool::new(1_000));
        let pool: Arc<dyn MemoryPool> = concrete.clone();
        let a = MemoryConsumer::new("a").register(&pool);
        a.try_grow(600).unwrap();
        let b = MemoryConsumer::new("b").register(&pool);
        assert!(b.try_grow(500).is_err(), "600 + 500 is past 1000");
        b.try_grow(300).unwrap();
        a.shrink(600);
        b.try_grow(100).unwrap();
        assert_eq!(pool.reserved(), 400);
        assert_eq!(concrete.peak(), 900);
    }
}
