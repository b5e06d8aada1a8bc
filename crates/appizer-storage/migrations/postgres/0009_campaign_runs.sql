-- Campaign runs: one record per run (a one-time campaign's `once`, each occurrence of a
-- recurring one, winner mode's `test` and `rest` phases), created once when it is due.
-- A run walks its audience in person order from `cursor`; each page's messages, outbox
-- records and new cursor are written in one transaction that names the cursor it read,
-- so a page is queued once across crashes and restarts.
-- Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE campaign_runs (
    campaign_id TEXT NOT NULL,
    run_key TEXT NOT NULL,
    phase TEXT NOT NULL,
    project_id TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    cursor TEXT,
    assigned BIGINT NOT NULL,
    queued BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (campaign_id, run_key, phase)
);
CREATE INDEX campaign_runs_by_state ON campaign_runs (state);

-- A campaign's delivery carries its own title and body, rendered for its person when
-- queued (JSON text); NULL: the message's.
ALTER TABLE push_outbox ADD COLUMN rendered TEXT;
CREATE INDEX push_messages_by_campaign ON push_messages (project_id, campaign_id);
