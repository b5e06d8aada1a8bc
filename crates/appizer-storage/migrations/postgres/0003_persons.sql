-- Persons, their distinct ids, the merge log, query-time overrides, deletions and
-- suppressed ids. Timestamps are milliseconds since the Unix epoch (UTC); booleans are
-- 0/1; JSON is text.
CREATE TABLE persons (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    is_identified BIGINT NOT NULL,
    properties TEXT NOT NULL,
    property_writes TEXT NOT NULL,
    first_seen BIGINT,
    last_seen BIGINT,
    event_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX persons_by_project ON persons (project_id, id);

CREATE TABLE person_distinct_ids (
    project_id TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, distinct_id)
);
CREATE INDEX person_distinct_ids_by_person ON person_distinct_ids (person_id);

-- Events stored with person `old_person_id` (and, when `distinct_id` is not empty, only
-- those with that distinct id) belong to `person_id`. Applied by every query; folded
-- into the Parquet files by compaction.
CREATE TABLE person_overrides (
    project_id TEXT NOT NULL,
    old_person_id TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, old_person_id, distinct_id)
);
CREATE INDEX person_overrides_by_target ON person_overrides (project_id, person_id);

CREATE TABLE person_merges (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    source_person_id TEXT NOT NULL,
    target_person_id TEXT NOT NULL,
    distinct_ids TEXT NOT NULL,
    source_snapshot TEXT NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT,
    merged_at BIGINT NOT NULL,
    split_at BIGINT
);
CREATE INDEX person_merges_by_target ON person_merges (project_id, target_person_id);
CREATE INDEX person_merges_by_source ON person_merges (project_id, source_person_id);

-- Deleted persons: their events are hidden at once and dropped by compaction.
CREATE TABLE deleted_persons (
    project_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, person_id)
);

-- Later events of these ids are dropped at ingestion (and counted).
CREATE TABLE suppressed_distinct_ids (
    project_id TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, distinct_id)
);

-- Watermarks of the workers: `person_updates` = the highest queue offset whose person
-- updates (counts, seen times, properties) are applied.
-- When compaction last rewrote an event file with the overrides of that moment.
ALTER TABLE event_files ADD COLUMN persons_folded_at BIGINT;

CREATE TABLE worker_offsets (
    name TEXT PRIMARY KEY,
    queue_offset BIGINT NOT NULL
);
