-- Partitioned ingestion: each event file and each worker offset belongs to one queue
-- partition; a partition is consumed by the worker that holds its lease. A lease's
-- epoch grows with every new holder, and every write of a partition's files or person
-- updates names the epoch it holds, so a worker that lost its lease cannot write.
-- Timestamps are milliseconds since the Unix epoch (UTC).
ALTER TABLE event_files ADD COLUMN queue_partition BIGINT NOT NULL DEFAULT 0;

CREATE TABLE partition_leases (
    queue_partition BIGINT PRIMARY KEY,
    owner TEXT,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Workers announce themselves here while they run, so each can take its share.
CREATE TABLE queue_workers (
    owner TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
