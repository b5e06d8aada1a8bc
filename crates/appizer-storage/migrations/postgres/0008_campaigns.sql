-- Campaigns: a name, a state and a definition (JSON text, checked by the push component
-- before it is stored), with a version that every update names and increments.
-- Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    definition TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaigns_by_project ON campaigns (project_id, id);
CREATE INDEX campaigns_by_state ON campaigns (state, project_id);
