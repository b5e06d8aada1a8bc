-- Campaign runs: one record per run (a one-time campaign's `once`, each occurrence of a
-- recurring one, winner mode's `test` and `rest` phases), created once when it is due.
-- A run walks its audience in person order from `cursor`; each page's messages, outbox
-- records and new cursor are written in one transaction that names the cursor it read,
-- so a page is queued once across crashes and restarts. Winner mode's `rest` keeps the
-- decision it was started on (JSON text).
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
    decision TEXT,
    PRIMARY KEY (campaign_id, run_key, phase)
);
CREATE INDEX campaign_runs_by_state ON campaign_runs (state);

-- A campaign's delivery carries its own title and body, rendered for its person when
-- queued (JSON text); NULL: the message's.
ALTER TABLE push_outbox ADD COLUMN rendered TEXT;
CREATE INDEX push_messages_by_campaign ON push_messages (project_id, campaign_id);

-- A triggered campaign's pending sends: one per (campaign, trigger event), recorded when
-- the event is processed (again after a replay: the key makes it once), due after the
-- campaign's delay, cancelled by the campaign's cancel event, and sent in one
-- transaction with its outbox records (fenced by its state).
CREATE TABLE campaign_triggers (
    campaign_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    properties TEXT NOT NULL,
    state TEXT NOT NULL,
    triggered_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, event_id)
);
CREATE INDEX campaign_triggers_due ON campaign_triggers (state, due_at);
CREATE INDEX campaign_triggers_by_person ON campaign_triggers (campaign_id, person_id, triggered_at);

-- When each person was sent each campaign message (its first delivery's due time), for
-- the project's frequency cap across campaigns; written with the deliveries.
CREATE TABLE push_person_sends (
    project_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (project_id, person_id, message_id)
);
