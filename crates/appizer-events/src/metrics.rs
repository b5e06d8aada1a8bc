//! Metrics of event processing, named `appizer_<area>_<what>_<unit>[_total]`.

/// Events accepted at the edge and made durable in the queue.
pub const EVENTS_ACCEPTED_TOTAL: &str = "appizer_ingest_events_accepted_total";
/// Messages dropped at the edge or by the workers, by `reason` (invalid, duplicate, ...).
pub const EVENTS_DROPPED_TOTAL: &str = "appizer_ingest_events_dropped_total";
/// Events written to the event store (after deduplication).
pub const EVENTS_STORED_TOTAL: &str = "appizer_ingest_events_stored_total";
/// Queue records appended but not yet committed (consumer lag).
pub const QUEUE_DEPTH_RECORDS: &str = "appizer_queue_depth_records";
/// Bytes of queue log on disk.
pub const QUEUE_DISK_BYTES: &str = "appizer_queue_disk_bytes";
/// Events buffered in memory, not yet in Parquet.
pub const BUFFERED_EVENTS: &str = "appizer_events_buffered_events";
/// Message ids held by the duplicate window.
pub const DEDUP_IDS: &str = "appizer_ingest_dedup_ids";
/// Bytes of the duplicate window's tables.
pub const DEDUP_TABLE_BYTES: &str = "appizer_ingest_dedup_table_bytes";
/// Failed flushes to Parquet (retried).
pub const FLUSH_FAILURES_TOTAL: &str = "appizer_events_flush_failures_total";
/// Writes (flushes, person updates) refused because the partition's lease had passed
/// to another worker; each stops that partition's workers here.
pub const FENCED_WRITES_TOTAL: &str = "appizer_events_fenced_writes_total";
/// Leases this node's workers found taken by another worker when renewing them.
pub const LEASES_LOST_TOTAL: &str = "appizer_events_leases_lost_total";
/// Partitions this node's workers hold now.
pub const PARTITIONS_HELD: &str = "appizer_events_partitions_held";
/// Flushes written before the event tap (campaign triggers) settled their events.
pub const TAP_UNSETTLED_FLUSHES_TOTAL: &str = "appizer_events_tap_unsettled_flushes_total";
/// Ingestion warnings not stored because the writer was behind or the store failed.
pub const WARNINGS_DISCARDED_TOTAL: &str = "appizer_ingest_warnings_discarded_total";
/// Persons merged by identify, alias and merge events.
pub const PERSON_MERGES_TOTAL: &str = "appizer_persons_merges_total";
/// Distinct ids held by the identity resolution cache.
pub const IDENTITY_CACHE_IDS: &str = "appizer_persons_cache_ids";
/// Estimated bytes of the identity resolution cache.
pub const IDENTITY_CACHE_BYTES: &str = "appizer_persons_cache_bytes";
