-- Ingestion warnings (messages dropped from accepted requests) and the catalog of
-- Parquet event files. Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE ingestion_warnings (
    id BIGSERIAL PRIMARY KEY,
    organization_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    message_id TEXT,
    field TEXT NOT NULL,
    reason TEXT NOT NULL,
    dialect TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ingestion_warnings_by_project ON ingestion_warnings (organization_id, project_id, id);

CREATE TABLE event_files (
    path TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    date TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    byte_size BIGINT NOT NULL,
    min_timestamp BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    max_queue_offset BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX event_files_by_project ON event_files (project_id, date);
