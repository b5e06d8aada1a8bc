use std::fs::File;
use std::path::Path;

use appizer_core::event::{Event, MessageType};
use chrono::DateTime;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{col, lit, SessionContext};
use serde_json::json;

use super::buffer::{to_batches, PARALLEL_BATCH_ROWS};
use super::flush::{sorted_days, timestamps};
use super::*;
use crate::background::cores;
use crate::events::files::FilesLocation;
use crate::events::schema::{batch_to_events, event_schema, events_to_batch, VIEW_COLUMNS};
use crate::open_metadata_store;
use crate::ProjectScope;

fn events(project: ProjectId, n: usize, day_offset: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let at = DateTime::from_timestamp(1_795_000_000 + day_offset * 86_400 + i as i64, 0)
                .unwrap();
            Event {
                message_id: format!("m{day_offset}-{i}"),
                anonymous_id: Some(format!("u{i}")),
                properties: json!({"i": i}).try_into().unwrap(),
                ..Event::new(
                    project,
                    MessageType::Track,
                    ["b", "a", "c"][i % 3],
                    format!("u{i}"),
                    at,
                )
            }
        })
        .collect()
}

/// A SQLite metadata store in `dir`, the file catalog of the tests.
async fn sqlite_catalog(dir: &Path) -> Arc<dyn MetadataStore> {
    open_metadata_store(&format!("sqlite://{}", dir.join("m.db").display()))
        .await
        .unwrap()
}

/// A store in `dir` whose compaction deletes replaced files at its next pass.
async fn compacting_store(dir: &Path) -> (EventStore, Arc<dyn MetadataStore>) {
    compacting_store_at(dir, FilesLocation::Dir(dir.join("events"))).await
}

/// [`compacting_store`] with its files at `location` (its catalog in `dir`).
async fn compacting_store_at(
    dir: &Path,
    location: FilesLocation,
) -> (EventStore, Arc<dyn MetadataStore>) {
    let catalog = sqlite_catalog(dir).await;
    let config = EventStoreConfig {
        retire_grace: Duration::ZERO,
        ..EventStoreConfig::at(location)
    };
    (EventStore::open(config, catalog.clone()).unwrap(), catalog)
}

/// Appends `rounds` rounds of `n` events of `project` on the first day (message ids
/// made unique per round), flushing each into a file of its own.
async fn flush_rounds(store: &EventStore, project: ProjectId, rounds: u64, n: usize) {
    for round in 0..rounds {
        let mut batch = events(project, n, 0);
        for e in &mut batch {
            e.message_id = format!("{}-{round}", e.message_id);
        }
        store.append(batch, round).unwrap();
        store.flush().await.unwrap();
    }
}

async fn count(store: &EventStore, project: ProjectId) -> usize {
    let ctx = SessionContext::new();
    let df = store
        .events(&ctx, ProjectScope::for_tests(project), None, None)
        .await
        .unwrap();
    df.count().await.unwrap()
}

#[test]
fn rows_are_grouped_by_day_and_sorted_by_event_then_time() {
    let p = ProjectId::new();
    // Two buffered batches, each spanning two days, events b, a, c in turn.
    let first = [events(p, 5, 0), events(p, 2, 1)].concat();
    let second = [events(p, 4, 1), events(p, 3, 0)].concat();
    let batches = vec![
        events_to_batch(&first).unwrap(),
        events_to_batch(&second).unwrap(),
    ];
    let days = sorted_days(&batches);
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].0, "2026-11-18");
    assert_eq!(days[1].0, "2026-11-19");
    assert_eq!((days[0].1.len(), days[1].1.len()), (8, 6));
    for (_, rows) in &days {
        let keys: Vec<(String, i64)> = rows
            .iter()
            .map(|&(b, r)| {
                let events = batches[b]
                    .column_by_name("event")
                    .unwrap()
                    .as_string::<i32>();
                (
                    events.value(r).to_string(),
                    timestamps(&batches[b]).value(r),
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

#[test]
fn a_big_step_becomes_batches_holding_every_event_in_order() {
    let p = ProjectId::new();
    let cores = cores();
    for n in [
        1,
        PARALLEL_BATCH_ROWS - 1,
        PARALLEL_BATCH_ROWS,
        3 * PARALLEL_BATCH_ROWS + 7,
    ] {
        let step = events(p, n, 0);
        let batches = to_batches(&step).unwrap();
        let parallel = cores >= 2 && n >= PARALLEL_BATCH_ROWS;
        assert_eq!(batches.len() > 1, parallel, "{n} events");
        assert!(batches.len() <= cores.max(1));
        let ids: Vec<String> = batches
            .iter()
            .flat_map(|b| batch_to_events(b).unwrap())
            .map(|e| e.message_id)
            .collect();
        let sent: Vec<String> = step.iter().map(|e| e.message_id.clone()).collect();
        assert_eq!(ids, sent, "{n} events");
    }
}

#[tokio::test]
async fn data_pages_hold_at_most_the_configured_rows() {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::file::serialized_reader::ReadOptionsBuilder;
    let dir = tempfile::tempdir().unwrap();
    let catalog = sqlite_catalog(dir.path()).await;
    let p = ProjectId::new();
    let store = EventStore::open(
        EventStoreConfig {
            page_rows: 2048,
            ..EventStoreConfig::new(dir.path().join("events"))
        },
        catalog.clone(),
    )
    .unwrap();
    store.append(events(p, 10_000, 0), 0).unwrap();
    store.flush().await.unwrap();
    let files = catalog
        .list_event_files(ProjectScope::for_tests(p))
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    let reader = SerializedFileReader::new_with_options(
        File::open(dir.path().join("events").join(&files[0].path)).unwrap(),
        ReadOptionsBuilder::new().with_page_index().build(),
    )
    .unwrap();
    let pages = reader.metadata().offset_index().expect("a page index");
    for (column, index) in pages[0].iter().enumerate() {
        let starts: Vec<i64> = index
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .chain([10_000])
            .collect();
        assert!(starts.len() >= 6, "column {column}: {starts:?}");
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] <= 2048, "column {column}: {starts:?}");
        }
    }
}

#[tokio::test]
async fn files_are_written_with_the_configured_codec_and_read_whatever_theirs() {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let catalog = sqlite_catalog(dir.path()).await;
    let p = ProjectId::new();
    let codecs = [
        (ParquetCompression::Zstd, "ZSTD"),
        (ParquetCompression::Lz4Raw, "LZ4_RAW"),
        (ParquetCompression::Snappy, "SNAPPY"),
    ];
    // Each codec for the other columns, and the next one for the key columns.
    let key = |i: usize| codecs[(i + 1) % codecs.len()];
    for (i, (codec, _)) in codecs.iter().enumerate() {
        let store = EventStore::open(
            EventStoreConfig {
                compression: *codec,
                key_compression: key(i).0,
                ..EventStoreConfig::new(dir.path().join("events"))
            },
            catalog.clone(),
        )
        .unwrap();
        store.append(events(p, 10, i as i64), i as u64).unwrap();
        store.flush().await.unwrap();
        assert_eq!(count(&store, p).await, 10 * (i + 1), "every file is read");
    }
    let mut files = catalog
        .list_event_files(ProjectScope::for_tests(p))
        .await
        .unwrap();
    files.sort_by(|a, b| a.date.cmp(&b.date));
    for (i, (file, (_, name))) in files.iter().zip(codecs).enumerate() {
        let reader = SerializedFileReader::new(
            File::open(dir.path().join("events").join(&file.path)).unwrap(),
        )
        .unwrap();
        let row_group = reader.metadata().row_group(0);
        for column in row_group.columns() {
            let path = column.column_path().string();
            let want = if KEY_COLUMNS.contains(&path.as_str()) {
                key(i).1
            } else {
                name
            };
            let codec = column.compression();
            assert!(
                codec.to_string().starts_with(want),
                "{path}: {codec} for {want}"
            );
        }
    }
}

#[tokio::test]
async fn buffered_events_are_queryable_then_flushed_to_partitioned_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = sqlite_catalog(dir.path()).await;
    let store = EventStore::open(
        EventStoreConfig::new(dir.path().join("events")),
        catalog.clone(),
    )
    .unwrap();
    let (a, b) = (ProjectId::new(), ProjectId::new());
    store.append(events(a, 10, 0), 3).unwrap();
    store.append(events(a, 5, 1), 4).unwrap();
    store.append(events(b, 7, 0), 5).unwrap();
    assert_eq!(count(&store, a).await, 15, "visible before any flush");
    assert_eq!(count(&store, b).await, 7);

    assert_eq!(store.flush().await.unwrap(), Some(5));
    assert_eq!(store.buffered_rows(), 0);
    assert_eq!(count(&store, a).await, 15, "visible after the flush");
    let files = catalog
        .list_event_files(ProjectScope::for_tests(a))
        .await
        .unwrap();
    assert_eq!(files.len(), 2, "one file per day");
    assert!(files
        .iter()
        .all(|f| f.path.starts_with(&format!("project={a}/date=2026-"))));
    assert_eq!(files.iter().map(|f| f.row_count).sum::<u64>(), 15);
    assert!(dir.path().join("events").join(&files[0].path).exists());
    assert_eq!(store.flushed_offset().await.unwrap(), Some(5));

    // More rows after the flush: files and buffer together, filtered by time.
    store.append(events(a, 3, 2), 6).unwrap();
    assert_eq!(count(&store, a).await, 18);
    let ctx = SessionContext::new();
    let day1 = DateTime::from_timestamp(1_795_000_000 + 86_400, 0).unwrap();
    let df = store
        .events(&ctx, ProjectScope::for_tests(a), Some(day1), None)
        .await
        .unwrap()
        .filter(
            col("timestamp").gt_eq(lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
                Some(day1.timestamp_micros()),
                Some("UTC".into()),
            ))),
        )
        .unwrap();
    assert_eq!(df.count().await.unwrap(), 8);
    assert_eq!(store.flush().await.unwrap(), Some(6));
    assert_eq!(store.flush().await.unwrap(), None, "nothing buffered");

    let mut recent = Vec::new();
    let seen = store
        .for_each_recent_event(DateTime::from_timestamp(0, 0).unwrap(), |e| {
            recent.push((e.project_id, e.message_id.to_string(), e.received_ms))
        })
        .await
        .unwrap();
    assert_eq!((seen, recent.len()), (25, 25));

    // A file without a catalog entry (a crash between the two) and a temporary file
    // are removed once older than the grace; catalogued files, and another
    // partition's strays, stay.
    let partition = dir.path().join("events").join(&files[0].path);
    let partition = partition.parent().unwrap();
    let strays = ["orphan.parquet", "half.parquet.tmp", "p3-theirs.parquet"];
    for name in strays {
        std::fs::write(partition.join(name), b"x").unwrap();
    }
    assert_eq!(
        store.remove_uncatalogued_files().await.unwrap(),
        0,
        "younger than the grace: perhaps still listed by a query elsewhere"
    );
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(600);
    for name in strays {
        let file = std::fs::File::options()
            .write(true)
            .open(partition.join(name))
            .unwrap();
        file.set_modified(long_ago).unwrap();
    }
    assert_eq!(store.remove_uncatalogued_files().await.unwrap(), 2);
    assert!(!partition.join("orphan.parquet").exists());
    assert!(partition.join("p3-theirs.parquet").exists());
    std::fs::remove_file(partition.join("p3-theirs.parquet")).unwrap();
    assert_eq!(count(&store, a).await, 18);
    assert!(recent.contains(&(b, "m0-6".to_string(), (1_795_000_000 + 6) * 1000)));
}

#[tokio::test]
async fn files_and_buffer_read_the_key_text_columns_as_views_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(
        EventStoreConfig::new(dir.path().join("events")),
        sqlite_catalog(dir.path()).await,
    )
    .unwrap();
    let p = ProjectId::new();
    let (stored, buffered) = (events(p, 6, 0), events(p, 4, 1));
    store.append(stored.clone(), 1).unwrap();
    store.flush().await.unwrap();
    store.append(buffered.clone(), 2).unwrap();

    let ctx = SessionContext::new();
    let df = store
        .events(&ctx, ProjectScope::for_tests(p), None, None)
        .await
        .unwrap();
    for name in VIEW_COLUMNS {
        let field = df.schema().field_with_unqualified_name(name).unwrap();
        assert_eq!(field.data_type(), &DataType::Utf8View, "{name}");
    }
    assert_eq!(
        df.schema()
            .field_with_unqualified_name("properties")
            .unwrap()
            .data_type(),
        &DataType::Utf8,
        "other text stays plain"
    );
    let mut read: Vec<(String, String, String)> = batch_to_events(
        &datafusion::arrow::compute::concat_batches(
            &df.schema().inner().clone(),
            &df.collect().await.unwrap(),
        )
        .unwrap(),
    )
    .unwrap()
    .into_iter()
    .map(|e| (e.message_id, e.event, e.distinct_id))
    .collect();
    read.sort();
    let mut expected: Vec<(String, String, String)> = stored
        .iter()
        .chain(&buffered)
        .map(|e| (e.message_id.clone(), e.event.clone(), e.distinct_id.clone()))
        .collect();
    expected.sort();
    assert_eq!(read, expected);
}

#[tokio::test]
async fn the_buffer_says_when_to_flush_and_when_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = sqlite_catalog(dir.path()).await;
    let config = EventStoreConfig {
        flush_rows: 10,
        ..EventStoreConfig::new(dir.path().join("events"))
    };
    let store = EventStore::open(config, catalog).unwrap();
    let p = ProjectId::new();
    store.append(events(p, 9, 0), 0).unwrap();
    assert!(!store.should_flush() && !store.is_full());
    store.append(events(p, 10, 1), 1).unwrap();
    assert!(store.should_flush() && !store.is_full());
    store.append(events(p, 1, 2), 2).unwrap();
    assert!(store.is_full(), "twice the flush size");
    store.flush().await.unwrap();
    assert!(!store.should_flush() && !store.is_full());
}

#[tokio::test]
async fn compaction_merges_small_files_of_a_day_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = compacting_store(dir.path()).await;
    let (a, b) = (ProjectId::new(), ProjectId::new());
    for round in 0..5u64 {
        let mut batch = events(a, 10, 0);
        for e in &mut batch {
            e.message_id = format!("{}-{round}", e.message_id);
        }
        store.append(batch, round).unwrap();
        store.append(events(b, 2, 0), round).unwrap();
        store.flush().await.unwrap();
    }
    assert_eq!(
        catalog
            .list_event_files(ProjectScope::for_tests(a))
            .await
            .unwrap()
            .len(),
        5
    );
    let done = store.compact().await.unwrap();
    assert_eq!(
        done,
        Compaction {
            files_in: 10,
            files_out: 2,
            rows: 60
        }
    );
    let files = catalog
        .list_event_files(ProjectScope::for_tests(a))
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].row_count, 50);
    assert_eq!(files[0].max_queue_offset, 4);
    assert_eq!(count(&store, a).await, 50);
    assert_eq!(count(&store, b).await, 10);
    // Only the merged files remain on disk.
    assert_eq!(store.remove_uncatalogued_files().await.unwrap(), 0);
    assert_eq!(walk_parquet(&dir.path().join("events")), 2);
    assert_eq!(
        store.compact().await.unwrap(),
        Compaction::default(),
        "nothing left to merge"
    );
}

/// Events per name from [`EventStore::counts`] over `[from, to)`.
async fn counted(
    store: &EventStore,
    project: ProjectId,
    from: i64,
    to: i64,
) -> Option<BTreeMap<String, u64>> {
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
    let counts = store
        .counts(ProjectScope::for_tests(project), at(from), at(to), None)
        .await
        .unwrap()?;
    let mut out = BTreeMap::new();
    for rollup in counts.files.iter().map(|r| &**r).chain([&counts.buffered]) {
        for name in ["a", "b", "c"] {
            *out.entry(name.to_string()).or_default() +=
                rollup.slots(Some(name)).map(|(_, c)| c).sum::<u64>();
        }
    }
    Some(out)
}

#[tokio::test]
async fn counts_come_from_the_files_rollups_and_the_buffer_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = compacting_store(dir.path()).await;
    let p = ProjectId::new();
    let day = 1_795_000_000 - 1_795_000_000 % 86_400;
    flush_rounds(&store, p, 4, 30).await;
    store.append(events(p, 6, 1), 4).unwrap();
    let want = |n: u64, m: u64| {
        BTreeMap::from([
            ("a".into(), n + m),
            ("b".into(), n + m),
            ("c".into(), n + m),
        ])
    };
    // 4 files of 30 events (10 per name), 6 buffered the next day (2 per name).
    assert_eq!(
        counted(&store, p, day, day + 2 * 86_400).await,
        Some(want(40, 2))
    );
    // A range without the buffered day still hands over the buffer (the caller
    // filters rows by time); files outside the range are left out.
    assert_eq!(
        counted(&store, p, day + 86_400, day + 2 * 86_400).await,
        Some(want(0, 2))
    );

    store.compact().await.unwrap();
    let files = catalog
        .list_event_files(ProjectScope::for_tests(p))
        .await
        .unwrap();
    assert_eq!(files.len(), 1, "compacted into one");
    assert_eq!(
        counted(&store, p, day, day + 2 * 86_400).await,
        Some(want(40, 2))
    );

    // A file without a rollup (an earlier version's) makes counting fall back.
    let path = dir.path().join("events").join(&files[0].path);
    let copy = std::fs::read(&path).unwrap();
    let batches: Vec<RecordBatch> =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            std::fs::File::open(&path).unwrap(),
            1024,
        )
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let fresh = EventStore::open(
        EventStoreConfig::new(dir.path().join("events")),
        catalog.clone(),
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(File::create(&path).unwrap(), event_schema(), None).unwrap();
    for b in &batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    assert_eq!(counted(&fresh, p, day, day + 2 * 86_400).await, None);
    assert_eq!(
        count(&fresh, p).await,
        120,
        "the events are all there to scan"
    );
    std::fs::write(&path, copy).unwrap();
}

fn walk_parquet(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                walk_parquet(&p)
            } else {
                usize::from(p.extension().is_some_and(|e| e == "parquet"))
            }
        })
        .sum()
}

#[tokio::test]
async fn a_deleted_projects_files_leave_the_catalog_then_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = compacting_store(dir.path()).await;
    let (tenant, gone, _) =
        crate::testing::Tenant::create(catalog.as_ref(), ProjectId::new(), "UTC")
            .await
            .unwrap();
    let (kept, _) = tenant
        .add_project(catalog.as_ref(), ProjectId::new(), "UTC")
        .await
        .unwrap();
    let mut both = events(gone.project(), 10, 0);
    both.extend(events(gone.project(), 10, 1));
    both.extend(events(kept.project(), 5, 0));
    store.append(both, 1).unwrap();
    store.flush().await.unwrap();
    let project_dir = dir
        .path()
        .join("events")
        .join(format!("project={}", gone.project()));
    assert!(project_dir.is_dir());
    assert_eq!(
        store.sweep_deleted_projects().await.unwrap(),
        0,
        "not deleted yet"
    );

    let at = chrono::Utc::now();
    let audit = appizer_core::tenancy::NewAuditEntry {
        organization_id: gone.organization(),
        project_id: Some(gone.project()),
        actor: appizer_core::tenancy::Actor::Cli,
        action: "project.delete".into(),
        target_type: "project".into(),
        target_id: gone.project().to_string(),
        details: json!({}),
        request_id: None,
        at,
    };
    assert!(catalog
        .delete_project(gone.organization(), gone.project(), at, &audit)
        .await
        .unwrap());
    assert_eq!(
        store.sweep_deleted_projects().await.unwrap(),
        2,
        "one file a day"
    );
    assert!(catalog.list_event_files(gone).await.unwrap().is_empty());
    // The next pass deletes them (no grace here) and the directories they leave.
    store.compact().await.unwrap();
    assert!(!project_dir.exists(), "{}", project_dir.display());
    assert_eq!(catalog.list_event_files(kept).await.unwrap().len(), 1);
    assert_eq!(count(&store, kept.project()).await, 5);
    assert!(dir.path().join("events").is_dir(), "the root stays");
}

#[tokio::test]
async fn lanes_write_their_own_partition_and_every_lane_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = sqlite_catalog(dir.path()).await;
    let leases = catalog.leases();
    leases.ensure_partitions(2).await.unwrap();
    let ttl = Duration::from_secs(10);
    let now = chrono::Utc::now().timestamp_millis();
    let zero = leases.acquire(0, "w", ttl, now).await.unwrap().unwrap();
    let one = leases.acquire(1, "w", ttl, now).await.unwrap().unwrap();
    let node = EventStore::open(
        EventStoreConfig::new(dir.path().join("events")),
        catalog.clone(),
    )
    .unwrap();
    let lane0 = node.lane(zero.fence());
    let lane1 = node.lane(one.fence());
    let a = ProjectId::new();
    lane0.append(events(a, 4, 0), 10).unwrap();
    lane1.append(events(a, 6, 1), 2).unwrap();
    // The node's reads, and each lane's, see both buffers.
    assert_eq!(count(&node, a).await, 10);
    assert_eq!(count(&lane0, a).await, 10);
    let before = node.version();

    assert_eq!(lane1.flush().await.unwrap(), Some(2));
    assert_eq!(lane1.flushed_offset().await.unwrap(), Some(2));
    assert_eq!(
        lane0.flushed_offset().await.unwrap(),
        None,
        "offsets per partition"
    );
    let files = catalog.all_event_files().await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].partition, 1);
    assert!(files[0].path.contains("/p1-"), "{}", files[0].path);
    assert_eq!(count(&node, a).await, 10, "nothing read twice or lost");

    // Partition 0 passes to another worker: its lane's flush is refused and writes
    // nothing; the rows stay buffered until the lane is dropped.
    let later = now + 60_000;
    leases
        .acquire(0, "other", ttl, later)
        .await
        .unwrap()
        .unwrap();
    let refused = lane0.flush().await.unwrap_err();
    assert!(
        matches!(refused, EventStoreError::Catalog(StoreError::Fenced(_))),
        "{refused:?}"
    );
    assert_eq!(catalog.all_event_files().await.unwrap().len(), 1);
    assert_eq!(
        walk_parquet(&dir.path().join("events")),
        1,
        "its file removed"
    );
    drop(lane0);
    assert_eq!(
        count(&node, a).await,
        6,
        "the dropped lane's rows left the reads"
    );
    assert!(node.version() > before);
}

#[tokio::test]
async fn in_a_bucket_files_are_flushed_read_counted_compacted_and_collected() {
    use crate::events::files::{FileBackend, S3Files};
    use crate::testing::s3::{check_file_backend, S3Emulator};
    let Some(emulator) = S3Emulator::start() else {
        return;
    };
    emulator.create_bucket("events");
    let settings = emulator.settings("events", "prod/e");
    let files = S3Files::open(&settings).unwrap();
    check_file_backend(&files).await;

    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = compacting_store_at(dir.path(), FilesLocation::S3(settings)).await;
    let p = ProjectId::new();
    let day = 1_795_000_000 - 1_795_000_000 % 86_400;
    flush_rounds(&store, p, 4, 30).await;
    let per_name = |n: u64| BTreeMap::from([("a".into(), n), ("b".into(), n), ("c".into(), n)]);
    let parquet_objects = || async {
        let listed = files.list().await.unwrap();
        listed
            .into_iter()
            .filter(|l| l.path.ends_with(".parquet"))
            .count()
    };
    assert_eq!(parquet_objects().await, 4);
    assert_eq!(count(&store, p).await, 120, "queries read the objects");
    assert_eq!(
        counted(&store, p, day, day + 86_400).await,
        Some(per_name(40)),
        "counts read the objects' footers"
    );
    assert_eq!(store.flushed_offset().await.unwrap(), Some(3));
    let mut recent = 0;
    store
        .for_each_recent_event(DateTime::UNIX_EPOCH, |_| recent += 1)
        .await
        .unwrap();
    assert_eq!(recent, 120);

    // Compaction reads the objects, writes one, and deletes what it replaced.
    let done = store.compact().await.unwrap();
    assert_eq!((done.files_in, done.files_out, done.rows), (4, 1, 120));
    assert_eq!(parquet_objects().await, 1);
    assert_eq!(count(&store, p).await, 120);
    assert_eq!(
        counted(&store, p, day, day + 86_400).await,
        Some(per_name(40))
    );

    // A stray of this partition goes; another partition's is left to its workers.
    let stray = format!("project={p}/date=2026-11-18/p0-stray.parquet");
    let others = format!("project={p}/date=2026-11-18/p1-other.parquet");
    for path in [&stray, &others] {
        files
            .put(path, bytes::Bytes::from_static(b"PAR1"))
            .await
            .unwrap();
    }
    assert_eq!(store.remove_uncatalogued_files().await.unwrap(), 1);
    let left: Vec<String> = files
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.path)
        .collect();
    assert!(!left.contains(&stray) && left.contains(&others), "{left:?}");

    // With the store not answering a flush fails and keeps its rows; once it answers
    // again they are written, and nothing was lost.
    store.append(events(p, 9, 1), 4).unwrap();
    emulator.pause();
    assert!(store.flush().await.is_err());
    assert_eq!(store.buffered_rows(), 9, "the rows stay in the buffer");
    emulator.resume();
    assert_eq!(store.flush().await.unwrap(), Some(4));
    assert_eq!(count(&store, p).await, 129);
    assert_eq!(
        catalog
            .list_event_files(ProjectScope::for_tests(p))
            .await
            .unwrap()
            .len(),
        2
    );
}
