//! The embedded log's own tests (the conformance suite in `tests/queue_conformance.rs`
//! runs the same contract on every backend).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::reader::{durable_ahead, LogReader};
use super::segment::{chain_seed, chained_crc, segment_path, SEGMENT_SUFFIX, SPARE_SUFFIX};
use super::{DurableLog, LogConfig, MAX_SPARES};
use crate::background::Background;
use crate::queue::{EventQueue, QueueError, QueueReader, Record};

fn config(dir: &Path) -> LogConfig {
    LogConfig {
        segment_bytes: 200,
        ..LogConfig::new(dir)
    }
}

async fn read_all(log: &DurableLog, from: u64) -> Vec<Record> {
    let mut reader = log.reader(from).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = reader
            .next_batch(7, Duration::from_millis(20))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_read_back_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = DurableLog::open(config(dir.path())).unwrap();
    for i in 0..50u64 {
        assert_eq!(
            log.append(format!("record {i}").into_bytes())
                .await
                .unwrap(),
            i
        );
    }
    let records = read_all(&log, 0).await;
    assert_eq!(records.len(), 50);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == i as u64 && r.payload == format!("record {i}").into_bytes()));
    assert!(log.shared.segments.lock().len() > 3, "segments rolled");
    let from_middle = read_all(&log, 33).await;
    assert_eq!(from_middle.first().unwrap().offset, 33);
    drop(log);

    let log = DurableLog::open(config(dir.path())).unwrap();
    assert_eq!(log.stats().end, 50);
    assert_eq!(log.append(b"after restart".to_vec()).await.unwrap(), 50);
    assert_eq!(read_all(&log, 48).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_reader_follows_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = DurableLog::open(config(dir.path())).unwrap();
    let mut reader = log.reader(0).unwrap();
    // Each append is read at once, so the reader stands exactly at every roll.
    for i in 0..60u64 {
        assert_eq!(
            log.append(format!("record {i}").into_bytes())
                .await
                .unwrap(),
            i
        );
        let batch = reader.next_batch(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(batch.len(), 1, "record {i}");
        assert_eq!(batch[0].offset, i);
    }
    let segments = log.shared.segments.lock().len();
    assert!(segments >= 4, "segments rolled: {segments}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs_and_all_get_distinct_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(DurableLog::open(LogConfig::new(dir.path())).unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![i as u8; 100]).await.unwrap() })
        })
        .collect();
    let mut offsets = Vec::new();
    for t in tasks {
        offsets.push(t.await.unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..200).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_overwritten_and_a_corrupt_record_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::new(dir.path())
    };
    {
        let log = DurableLog::open(cfg.clone()).unwrap();
        for i in 0..3u8 {
            log.append(vec![i; 10]).await.unwrap();
        }
    }
    let path = segment_path(dir.path(), 0);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        4096,
        "allocated in full"
    );
    // A crash mid-write leaves half a record behind, then a whole one that was
    // never acknowledged (written out of order).
    let mut bytes = fs::read(&path).unwrap();
    let torn_at = 3 * 18;
    bytes[torn_at..torn_at + 6].copy_from_slice(&[10, 0, 0, 0, 1, 2]);
    let crc = chained_crc(chain_seed(0), &[7; 10]);
    let whole = [&10u32.to_le_bytes()[..], &crc.to_le_bytes(), &[7; 10]].concat();
    bytes[torn_at + 18..torn_at + 36].copy_from_slice(&whole);
    fs::write(&path, &bytes).unwrap();

    let log = DurableLog::open(cfg.clone()).unwrap();
    assert_eq!(log.stats().end, 3);
    assert_eq!(log.stats().disk_bytes, 3 * 18);
    assert_eq!(log.append(vec![9; 10]).await.unwrap(), 3);
    let records = read_all(&log, 0).await;
    assert_eq!(records.len(), 4);
    assert_eq!(records[3].payload, vec![9; 10]);
    drop(log);
    // The stray record after the new one does not continue its chain.
    let log = DurableLog::open(cfg.clone()).unwrap();
    assert_eq!(log.stats().end, 4);
    drop(log);

    // Flip a payload byte of record 1: the checksum catches it on open.
    let mut bytes = fs::read(&path).unwrap();
    bytes[18 + 8] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let log = DurableLog::open(cfg).unwrap();
    assert_eq!(
        log.stats().end,
        1,
        "everything from the corrupt record on is cut"
    );
    assert!(matches!(
        log.append(Vec::new()).await,
        Err(QueueError::EmptyRecord)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_at_the_tail_reads_no_byte_past_the_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    // One segment (allocated in full) holds every record of the test.
    let log = DurableLog::open(LogConfig::new(dir.path())).unwrap();
    let mut reader = LogReader::new(log.shared.clone(), 0);
    for i in 0..20u64 {
        for j in 0..3 {
            log.append(format!("record {i}.{j}").into_bytes())
                .await
                .unwrap();
        }
        let batch = reader.next_batch(10, Duration::from_secs(1)).await.unwrap();
        let read: Vec<_> = batch.iter().map(|r| r.payload.clone()).collect();
        let written: Vec<_> = (0..3)
            .map(|j| format!("record {i}.{j}").into_bytes())
            .collect();
        assert_eq!(read, written);
        // Nothing beyond the records was buffered, and the reader may read no
        // further until more are durable.
        let open = reader.open.as_ref().unwrap();
        assert!(open.reader.buffer().is_empty());
        assert_eq!(open.reader.get_ref().limit(), 0);
        assert_eq!(durable_ahead(&log.shared, open), Some(0));
    }
    // A reader that starts inside the segment (positioning past records) buffers
    // no byte past them either.
    let mut late = LogReader::new(log.shared.clone(), 55);
    let batch = late.next_batch(10, Duration::from_secs(1)).await.unwrap();
    let read: Vec<_> = batch.iter().map(|r| r.offset).collect();
    assert_eq!(read, (55..60).collect::<Vec<_>>());
    let open = late.open.as_ref().unwrap();
    assert!(open.reader.buffer().is_empty());
    assert_eq!(open.reader.get_ref().limit(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_segments_are_reused_and_their_old_records_never_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 256,
        ..LogConfig::new(dir.path())
    };
    let files = |suffix: &str| {
        fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(suffix)
            })
            .count()
    };
    let log = DurableLog::open(cfg.clone()).unwrap();
    // 40-byte records (48 on disk): a segment rolls after 6.
    let record = |i: u64| format!("{i:040}").into_bytes();
    // 31 records: the writer rolls a full segment after answering, so the answer
    // to the 31st means the roll after the 30th is done.
    for i in 0..31 {
        log.append(record(i)).await.unwrap();
    }
    log.commit(30).await.unwrap();
    assert_eq!(files(SPARE_SUFFIX), MAX_SPARES, "kept for reuse");
    assert_eq!(files(SEGMENT_SUFFIX), 1);
    // The next segments take the spares: the files hold older records behind the
    // new ones, which must not be read as if they followed them.
    for i in 31..45 {
        log.append(record(i)).await.unwrap();
    }
    assert_eq!(files(SPARE_SUFFIX), 0);
    let read: Vec<u64> = read_all(&log, 30).await.iter().map(|r| r.offset).collect();
    assert_eq!(read, (30..45).collect::<Vec<_>>());
    drop(log);
    let log = DurableLog::open(cfg).unwrap();
    assert_eq!(log.stats().end, 45);
    let records = read_all(&log, 30).await;
    assert!(records.iter().all(|r| r.payload == record(r.offset)));
    assert_eq!(records.len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_segment_size_after_a_restart_keeps_the_disk_count_true() {
    let dir = tempfile::tempdir().unwrap();
    let big = LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::new(dir.path())
    };
    let log = DurableLog::open(big.clone()).unwrap();
    log.append(vec![1; 100]).await.unwrap();
    drop(log);
    // The segment was allocated at 64 KiB; it now closes at 256 bytes.
    let log = DurableLog::open(LogConfig {
        segment_bytes: 256,
        ..big
    })
    .unwrap();
    for _ in 0..5 {
        log.append(vec![2; 100]).await.unwrap();
    }
    assert_eq!(log.stats().disk_bytes, 6 * 108);
    assert_eq!(
        fs::metadata(segment_path(dir.path(), 0)).unwrap().len(),
        3 * 108
    );
    // The writer rolls a full segment after answering its last append: the commit
    // below frees both full segments only once the third one has started.
    let started = std::time::Instant::now();
    while log.shared.segments.lock().len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "no roll");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    log.commit(6).await.unwrap();
    assert_eq!(log.stats().disk_bytes, 0, "{:?}", log.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_persist_reclaim_segments_and_the_budget_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 100,
        max_disk_bytes: 1_000,
        ..LogConfig::new(dir.path())
    };
    let log = DurableLog::open(cfg.clone()).unwrap();
    let mut full = None;
    for _ in 0..100 {
        match log.append(vec![1; 42]).await {
            Ok(_) => {}
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    assert!(matches!(
        full,
        Some(QueueError::Full {
            budget_bytes: 1_000
        })
    ));
    let stats = log.stats();
    assert_eq!(stats.depth(), stats.end);
    assert!(stats.disk_bytes <= 1_000);

    log.commit(stats.end).await.unwrap();
    assert!(log.stats().disk_bytes < 100, "{:?}", log.stats());
    assert!(log.append(vec![1; 42]).await.is_ok(), "room again");
    drop(log);
    let log = DurableLog::open(cfg).unwrap();
    assert_eq!(log.stats().committed, stats.end);
    assert_eq!(read_all(&log, stats.end).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_read_on_the_long_reads_pool_even_when_a_read_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Background::new("test-reads", 1, Default::default()).unwrap();
    let log = DurableLog::open(LogConfig {
        segment_bytes: 256 << 10,
        long_reads: Some(pool.clone()),
        ..LogConfig::new(dir.path())
    })
    .unwrap();
    let payload = |i: u64| format!("{i:08}").repeat(512).into_bytes();
    for i in 0..300u64 {
        log.append(payload(i)).await.unwrap();
    }
    // 1.2 MB behind: every read below is a long one.
    let mut reader = log.reader(0).unwrap();
    let first = reader.next_batch(40, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 40);
    // The pool's one thread held busy, so the next read waits behind it there.
    let (started, has_started) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = tokio::spawn(async move {
        pool.run(move || {
            started.send(()).unwrap();
            let _ = released.recv();
        })
        .await
    });
    tokio::task::spawn_blocking(move || has_started.recv().unwrap())
        .await
        .unwrap();
    // Polled once and dropped: the pool still reads later, the reader forgets that
    // read and seeks again.
    let polled_once = tokio::select! {
        biased;
        batch = reader.next_batch(40, Duration::ZERO) => Some(batch),
        _ = std::future::ready(()) => None,
    };
    assert!(
        polled_once.is_none(),
        "the read went to the pool (inline, it would be done at once)"
    );
    release.send(()).unwrap();
    holder.await.unwrap();
    let mut read = first;
    while read.len() < 300 {
        let batch = reader
            .next_batch(40, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "stalled at {}", read.len());
        read.extend(batch);
    }
    for (i, record) in read.iter().enumerate() {
        assert_eq!(record.offset, i as u64);
        assert_eq!(record.payload, payload(i as u64), "record {i}");
    }
    assert!(reader
        .next_batch(40, Duration::from_millis(20))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_log_in_use_holds_every_record_not_committed() {
    use super::copy::{files_to_copy, read_for_copy};
    let dir = tempfile::tempdir().unwrap();
    let log = DurableLog::open(config(dir.path())).unwrap();
    for i in 0..40u64 {
        log.append(format!("record {i}").into_bytes())
            .await
            .unwrap();
    }
    log.commit(25).await.unwrap();
    let names = files_to_copy(dir.path()).unwrap();
    assert_eq!(names[0], "consumer.offset", "{names:?}");
    assert!(names[1..].iter().all(|n| n.ends_with(SEGMENT_SUFFIX)));
    assert!(names.len() >= 3, "two segments at least: {names:?}");
    // A segment committed after the listing is gone when its turn comes: left out.
    let last: u64 = names
        .last()
        .unwrap()
        .strip_suffix(SEGMENT_SUFFIX)
        .unwrap()
        .parse()
        .unwrap();
    log.commit(last).await.unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for name in &names {
        if let Some(bytes) = read_for_copy(dir.path(), name).unwrap() {
            fs::write(copy.path().join(name), bytes).unwrap();
            copied += 1;
        }
    }
    assert!(copied < names.len(), "a committed segment was left out");
    drop(log);
    let restored = DurableLog::open(config(copy.path())).unwrap();
    let committed = restored.stats().committed;
    assert_eq!(committed, last);
    let records = read_all(&restored, committed).await;
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (last..40).collect::<Vec<_>>());
    assert!(records
        .iter()
        .all(|r| r.payload == format!("record {}", r.offset).into_bytes()));
}
