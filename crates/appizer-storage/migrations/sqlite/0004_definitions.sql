-- Saved analytics definitions (custom metrics, segments) and segment members.
-- Timestamps are milliseconds since the Unix epoch (UTC); JSON is text.
CREATE TABLE definitions (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    body TEXT NOT NULL,
    member_count BIGINT,
    computed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX definitions_by_name ON definitions (project_id, kind, name);

CREATE TABLE segment_members (
    segment_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (segment_id, person_id)
);
