//! [`Background`]: a few threads for CPU-heavy work that can wait (decoding queue
//! records, writing and compacting Parquet files), run at a lower scheduling priority
//! than request handling. When both want the CPU, the gateway keeps answering quickly and
//! acknowledged events wait, durable, in the queue; when the gateway is idle the
//! background threads get every core.
//!
//! Two ways down: a niceness, and on Linux the `SCHED_IDLE` policy. A nice thread that
//! has just been given a core may keep it for its time slice (milliseconds) before a
//! woken request thread gets it; a `SCHED_IDLE` thread is preempted as soon as any
//! normal thread becomes runnable.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A cloneable handle to the pool; its threads end when the last handle is dropped.
#[derive(Clone)]
pub struct Background {
    /// `None`: tokio's blocking threads, at the process's priority.
    jobs: Option<mpsc::Sender<Job>>,
    priority: Priority,
}

/// How far below the caller the pool's threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Priority {
    /// Steps nicer than the caller (0 keeps its niceness; niceness stops at 19).
    pub nice: i32,
    /// Linux `SCHED_IDLE`: the threads run only on cores no normal thread wants, and
    /// yield at once when one does. Elsewhere only `nice` applies.
    pub idle: bool,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl Background {
    /// Starts `threads` threads named `name` at `priority`. Threads they start inherit
    /// it.
    pub fn new(name: &str, threads: usize, priority: Priority) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    lower_priority(priority);
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
            priority,
        })
    }

    /// No threads of its own: work runs on tokio's blocking threads at the process's
    /// priority (tests, tools).
    pub fn blocking() -> Self {
        Self {
            jobs: None,
            priority: Priority::default(),
        }
    }

    /// A pool sized to the machine's cores.
    pub fn per_core(name: &str, priority: Priority) -> std::io::Result<Self> {
        Self::new(name, cores(), priority)
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

/// A tokio runtime whose threads run at a lower priority, for background work that is
/// mostly waiting on the network (push delivery). Dropping it stops its threads
/// without waiting (it may be dropped inside another runtime).
pub struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl std::fmt::Debug for BackgroundRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackgroundRuntime")
    }
}

impl BackgroundRuntime {
    pub fn new(name: &str, threads: usize, priority: Priority) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || lower_priority(priority))
            .build()?;
        Ok(Self(Some(runtime)))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("a runtime is there until dropped")
            .handle()
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The cores this process may use, read once (the standard library reads the CPU
/// affinity and cgroup quota again at every call; callers on hot paths ask per step).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `work` on each `chunk`-sized part of `items`, a scoped thread per part (at
/// the caller's priority, which threads inherit), and returns the results in the parts'
/// order. `work` gets the part's index. A panic in `work` is resumed in the caller.
pub fn split_across_threads<T: Sync, R: Send>(
    items: &[T],
    chunk: usize,
    work: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let work = &work;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk.max(1))
            .enumerate()
            .map(|(i, part)| scope.spawn(move || work(i, part)))
            .collect();
        parts
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Lowers the calling thread to `priority` (Linux keeps both per thread). A failure
/// is logged: the work still runs, at the caller's priority.
fn lower_priority(priority: Priority) {
    #[cfg(target_os = "linux")]
    {
        let base = current_nice();
        if priority.idle {
            enter_sched_idle();
        }
        // Also puts back the niceness should entering SCHED_IDLE have reset it.
        let target = (base + priority.nice.max(0)).min(19);
        if current_nice() != target {
            let me = Some(rustix::thread::gettid());
            if let Err(error) = rustix::process::setpriority_process(me, target) {
                tracing::warn!(nice = priority.nice, %error, "cannot lower the niceness of a background thread");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
}

#[cfg(target_os = "linux")]
fn enter_sched_idle() {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    // The call sets the policy, then the niceness to 0, which an unprivileged thread
    // above 0 may not do: what counts is the policy afterwards.
    let outcome = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        idle,
    );
    if thread_schedule_policy().ok() != Some(idle) {
        tracing::warn!(?outcome, "cannot put a background thread under SCHED_IDLE");
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

    #[test]
    fn split_work_comes_back_in_order_with_each_part_index() {
        let items: Vec<u32> = (0..10).collect();
        let parts = split_across_threads(&items, 4, |i, part| (i, part.to_vec()));
        assert_eq!(
            parts,
            vec![
                (0, vec![0, 1, 2, 3]),
                (1, vec![4, 5, 6, 7]),
                (2, vec![8, 9]),
            ]
        );
        let caught = std::panic::catch_unwind(|| {
            split_across_threads(&items, 5, |i, _| {
                assert_ne!(i, 1, "part one fails");
            })
        });
        let panic = caught.unwrap_err();
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        assert!(message.contains("part one fails"), "{message}");
    }

    #[tokio::test]
    async fn runs_work_and_returns_its_result_on_many_threads() {
        let pool = Background::new("test-bg", 2, Priority::default()).unwrap();
        let results =
            futures_util::future::join_all((0..20u64).map(|i| pool.run(move || i * i))).await;
        assert_eq!(results, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panic_in_the_work_reaches_the_caller_and_the_pool_survives() {
        for pool in [
            Background::new("test-bg", 1, Priority::default()).unwrap(),
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
        let pool = Background::new(
            "test-bg",
            1,
            Priority {
                nice: 5,
                idle: false,
            },
        )
        .unwrap();
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn idle_threads_run_under_sched_idle_keep_their_niceness_and_pass_both_on() {
        use thread_priority::unix::{
            thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
        };
        let base = current_nice();
        let pool = Background::new(
            "test-bg",
            1,
            Priority {
                nice: 3,
                idle: true,
            },
        )
        .unwrap();
        let policy = || thread_schedule_policy().unwrap();
        let (own, child) = pool
            .run(move || {
                let child = std::thread::spawn(move || (policy(), current_nice()))
                    .join()
                    .unwrap();
                ((policy(), current_nice()), child)
            })
            .await;
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let nice = (base + 3).min(19);
        assert_eq!(own, (idle, nice));
        assert_eq!(child, (idle, nice));
        assert_ne!(policy(), idle, "the caller's own thread is untouched");
        assert_eq!(current_nice(), base);
    }
}
