//! [`Background`]: a few threads for CPU-heavy work that can wait (decoding queue
//! records, writing and compacting Parquet files), run at a lower scheduling priority
//! than request handling. When both want the CPU, the gateway keeps answering quickly and
//! acknowledged events wait, durable, in the queue; when the gateway is idle the
//! background threads get every core.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A cloneable handle to the pool; its threads end when the last handle is dropped.
#[derive(Clone)]
pub struct Background {
    /// `None`: tokio's blocking threads, at the process's priority.
    jobs: Option<mpsc::Sender<Job>>,
    nice: i32,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("nice", &self.nice)
            .finish_non_exhaustive()
    }
}

impl Background {
    /// Starts `threads` threads named `name`, `nice` steps nicer than the caller (0
    /// keeps its priority; niceness stops at 19). Threads they start inherit the niceness.
    pub fn new(name: &str, threads: usize, nice: i32) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: Some(jobs),
            nice,
        })
    }

    /// No threads of its own: work runs on tokio's blocking threads at the process's
    /// priority (tests, tools).
    pub fn blocking() -> Self {
        Self {
            jobs: None,
            nice: 0,
        }
    }

    /// A pool sized to the machine's cores.
    pub fn per_core(name: &str, nice: i32) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(name, cores, nice)
    }

    /// Runs `work` on a pool thread and waits for its result without blocking the
    /// async runtime. A panic in `work` is resumed in the caller.
    pub async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> R {
        let Some(jobs) = &self.jobs else {
            return match tokio::task::spawn_blocking(work).await {
                Ok(value) => value,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = tx.send(outcome);
        });
        if jobs.send(job).is_err() {
            panic!("background threads are gone");
        }
        match rx.await {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("a background thread ended without answering"),
        }
    }
}

/// Adds `nice` to the calling thread's niceness (Linux keeps niceness per thread).
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let target = (current_nice() + nice).min(19);
        let me = Some(rustix::thread::gettid());
        if let Err(error) = rustix::process::setpriority_process(me, target) {
            tracing::warn!(nice, %error, "cannot lower the priority of a background thread");
        }
    }
}

/// The calling thread's niceness.
#[cfg(target_os = "linux")]
fn current_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_and_returns_its_result_on_many_threads() {
        let pool = Background::new("test-bg", 2, 0).unwrap();
        let results =
            futures_util::future::join_all((0..20u64).map(|i| pool.run(move || i * i))).await;
        assert_eq!(results, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panic_in_the_work_reaches_the_caller_and_the_pool_survives() {
        for pool in [
            Background::new("test-bg", 1, 0).unwrap(),
            Background::blocking(),
        ] {
            let caught = tokio::spawn({
                let pool = pool.clone();
                async move { pool.run(|| panic!("boom")).await }
            })
            .await;
            assert!(caught.unwrap_err().is_panic());
            assert_eq!(pool.run(|| 7).await, 7);
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn threads_run_at_the_requested_niceness_and_their_children_inherit_it() {
        let base = current_nice();
        let pool = Background::new("test-bg", 1, 5).unwrap();
        let (own, child) = pool
            .run(|| {
                let child = std::thread::spawn(current_nice).join().unwrap();
                (current_nice(), child)
            })
            .await;
        let expected = (base + 5).min(19).max(base);
        assert_eq!(own, expected);
        assert_eq!(child, expected);
        // The caller's own thread is untouched.
        assert_eq!(current_nice(), base);
    }
}
