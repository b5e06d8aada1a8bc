//! One conformance suite for every event queue backend: the embedded log and NATS
//! JetStream.
//!
//! The cases are written once against `dyn EventQueue` and instantiated per backend.
//! The JetStream run needs `APPIZER_TEST_NATS_URL` (e.g. `nats://127.0.0.1:4222`, a
//! server started with `-js`); each test gets its own stream, deleted at its end.
//! Without the variable the JetStream cases are skipped locally and fail under CI
//! (`CI=true`), so the suite can never silently shrink there. To start NATS on a Debian
//! machine: `start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server
//! -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server`.

use std::sync::Arc;
use std::time::Duration;

use appizer_storage::queue::{
    DurableLog, EventQueue, LogConfig, NatsConfig, NatsQueue, QueueError, Record,
};

/// One queue that a case can open, drop and open again, with a disk budget.
enum Fixture {
    Log(tempfile::TempDir),
    Nats(NatsConfig),
}

impl Fixture {
    fn log() -> Option<Self> {
        Some(Fixture::Log(tempfile::tempdir().unwrap()))
    }

    fn nats() -> Option<Self> {
        let Ok(url) = std::env::var("APPIZER_TEST_NATS_URL") else {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("APPIZER_TEST_NATS_URL must be set under CI");
            }
            eprintln!("skipped: set APPIZER_TEST_NATS_URL to run the NATS JetStream cases");
            return None;
        };
        let stream = format!("APPIZER_TEST_{}", uuid::Uuid::new_v4().simple());
        Some(Fixture::Nats(NatsConfig::new(url, stream)))
    }

    async fn open_with_budget(&self, max_disk_bytes: u64) -> Arc<dyn EventQueue> {
        match self {
            Fixture::Log(dir) => Arc::new(
                DurableLog::open(LogConfig {
                    segment_bytes: 4_096,
                    max_disk_bytes,
                    ..LogConfig::new(dir.path())
                })
                .unwrap(),
            ),
            Fixture::Nats(config) => Arc::new(
                NatsQueue::open(NatsConfig {
                    max_disk_bytes,
                    ..config.clone()
                })
                .await
                .unwrap(),
            ),
        }
    }

    async fn open(&self) -> Arc<dyn EventQueue> {
        self.open_with_budget(1 << 30).await
    }

    /// Removes what the queue left outside the test's temporary directory.
    async fn finish(self) {
        if let Fixture::Nats(config) = self {
            NatsQueue::open(config)
                .await
                .unwrap()
                .delete()
                .await
                .unwrap();
        }
    }
}

macro_rules! queue_conformance_suite {
    ($($case:ident),* $(,)?) => {
        mod log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(fixture) = super::Fixture::log() else { return };
                    super::cases::$case(&fixture).await;
                    fixture.finish().await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(fixture) = super::Fixture::nats() else { return };
                    super::cases::$case(&fixture).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}

queue_conformance_suite!(
    appends_come_back_in_order_from_any_offset_and_after_reopening,
    a_waiting_reader_gets_each_append_as_it_lands,
    concurrent_appends_get_distinct_consecutive_offsets,
    commits_persist_and_a_reader_resumes_there,
    the_disk_budget_refuses_appends_until_a_commit_makes_room,
    empty_and_oversized_records_are_refused_and_the_largest_allowed_one_round_trips,
);

/// Everything readable from `from`, in batches of at most 7.
async fn read_all(queue: &dyn EventQueue, from: u64) -> Vec<Record> {
    let mut reader = queue.reader(from).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = reader
            .next_batch(7, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(batch.len() <= 7);
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i}").into_bytes()
}

mod cases {
    use super::*;

    pub async fn appends_come_back_in_order_from_any_offset_and_after_reopening(f: &Fixture) {
        let queue = f.open().await;
        for i in 0..50u64 {
            assert_eq!(queue.append(payload(i)).await.unwrap(), i);
        }
        assert_eq!(queue.stats().end, 50);
        let records = read_all(&*queue, 0).await;
        assert_eq!(records.len(), 50);
        for (i, r) in records.iter().enumerate() {
            assert_eq!((r.offset, &r.payload), (i as u64, &payload(i as u64)));
        }
        let from_middle = read_all(&*queue, 33).await;
        assert_eq!(from_middle.len(), 17);
        assert_eq!(from_middle[0].offset, 33);
        queue.ping().await.unwrap();
        drop(queue);

        let queue = f.open().await;
        assert_eq!(queue.stats().end, 50);
        assert_eq!(queue.stats().committed, 0);
        assert_eq!(queue.append(b"after reopening".to_vec()).await.unwrap(), 50);
        let tail = read_all(&*queue, 48).await;
        assert_eq!(
            tail.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![48, 49, 50]
        );
        assert_eq!(tail[2].payload, b"after reopening");
    }

    pub async fn a_waiting_reader_gets_each_append_as_it_lands(f: &Fixture) {
        let queue = f.open().await;
        let mut reader = queue.reader(0).unwrap();
        let idle = reader
            .next_batch(10, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(idle.is_empty(), "nothing to read yet: {idle:?}");
        for i in 0..20u64 {
            // The reader waits first, then the record lands.
            let appended = tokio::spawn({
                let queue = queue.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    queue.append(payload(i)).await.unwrap()
                }
            });
            let batch = reader.next_batch(10, Duration::from_secs(5)).await.unwrap();
            assert_eq!(appended.await.unwrap(), i);
            assert_eq!(batch.len(), 1, "record {i}: {batch:?}");
            assert_eq!((batch[0].offset, &batch[0].payload), (i, &payload(i)));
        }
    }

    pub async fn concurrent_appends_get_distinct_consecutive_offsets(f: &Fixture) {
        let queue = f.open().await;
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let queue = queue.clone();
                tokio::spawn(async move { (queue.append(payload(i)).await.unwrap(), i) })
            })
            .collect();
        let mut appended = Vec::new();
        for t in tasks {
            appended.push(t.await.unwrap());
        }
        appended.sort();
        assert_eq!(
            appended.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (0..200).collect::<Vec<_>>()
        );
        let records = read_all(&*queue, 0).await;
        assert_eq!(records.len(), 200);
        for (r, (offset, i)) in records.iter().zip(&appended) {
            assert_eq!((r.offset, &r.payload), (*offset, &payload(*i)));
        }
    }

    pub async fn commits_persist_and_a_reader_resumes_there(f: &Fixture) {
        let queue = f.open().await;
        for i in 0..30u64 {
            queue.append(payload(i)).await.unwrap();
        }
        queue.commit(10).await.unwrap();
        let stats = queue.stats();
        assert_eq!((stats.end, stats.committed, stats.depth()), (30, 10, 20));
        queue.commit(5).await.unwrap();
        assert_eq!(queue.stats().committed, 10, "a commit never goes back");
        drop(queue);

        let queue = f.open().await;
        let stats = queue.stats();
        assert_eq!((stats.end, stats.committed), (30, 10));
        let rest = read_all(&*queue, stats.committed).await;
        assert_eq!(rest.len(), 20);
        assert_eq!((rest[0].offset, &rest[0].payload), (10, &payload(10)));
        // A commit past the end stops at the end.
        queue.commit(1_000).await.unwrap();
        assert_eq!(queue.stats().committed, 30);
        assert_eq!(queue.stats().depth(), 0);
        assert_eq!(queue.append(payload(30)).await.unwrap(), 30);
    }

    pub async fn the_disk_budget_refuses_appends_until_a_commit_makes_room(f: &Fixture) {
        const BUDGET: u64 = 8_192;
        let queue = f.open_with_budget(BUDGET).await;
        let mut accepted = 0u64;
        let refused = loop {
            match queue.append(vec![b'x'; 400]).await {
                Ok(offset) => {
                    assert_eq!(offset, accepted);
                    accepted += 1;
                    assert!(accepted < 100, "the budget never refused an append");
                }
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                refused,
                QueueError::Full {
                    budget_bytes: BUDGET
                }
            ),
            "{refused:?}"
        );
        // Each record takes 400 bytes and a little overhead.
        assert!((10..=20).contains(&accepted), "{accepted} accepted");
        assert_eq!(queue.stats().depth(), accepted);
        assert!(matches!(
            queue.append(vec![b'x'; 400]).await,
            Err(QueueError::Full { .. })
        ));

        let before = queue.stats().disk_bytes;
        queue.commit(accepted).await.unwrap();
        assert!(
            queue.stats().disk_bytes < before,
            "{before} -> {:?}",
            queue.stats()
        );
        assert_eq!(queue.append(vec![b'y'; 400]).await.unwrap(), accepted);
        let after = read_all(&*queue, accepted).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].payload, vec![b'y'; 400]);
    }

    pub async fn empty_and_oversized_records_are_refused_and_the_largest_allowed_one_round_trips(
        f: &Fixture,
    ) {
        let queue = f.open().await;
        assert!(matches!(
            queue.append(Vec::new()).await,
            Err(QueueError::EmptyRecord)
        ));
        let limit = queue.max_record_bytes();
        assert!(
            limit >= 512 << 10,
            "records of a whole request fit: {limit}"
        );
        match queue.append(vec![1; limit + 1]).await {
            Err(QueueError::RecordTooLarge { size, limit: l }) => {
                assert_eq!((size, l), (limit + 1, limit));
            }
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        let largest: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
        assert_eq!(queue.append(largest.clone()).await.unwrap(), 0);
        assert_eq!(queue.append(payload(1)).await.unwrap(), 1);
        let records = read_all(&*queue, 0).await;
        assert_eq!(records.len(), 2);
        assert!(
            records[0].payload == largest,
            "the largest record round-trips"
        );
        assert_eq!(records[1].payload, payload(1));
    }
}
