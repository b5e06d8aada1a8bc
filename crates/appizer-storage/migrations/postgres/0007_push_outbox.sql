-- Push messages and their outbox: one record per (message, device), written with the
-- message in one transaction, taken by the delivery loop (leased until a time so two
-- loops never hold the same record) and completed with the provider's answer.
-- Timestamps are milliseconds since the Unix epoch (UTC); JSON is text.
CREATE TABLE push_messages (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    idempotency_key TEXT,
    content TEXT NOT NULL,
    audience TEXT NOT NULL,
    platforms TEXT NOT NULL,
    campaign_id TEXT,
    variant TEXT,
    devices BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX push_messages_by_idempotency_key
    ON push_messages (project_id, idempotency_key);

CREATE TABLE push_outbox (
    message_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    leased_until BIGINT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, device_id)
);
CREATE INDEX push_outbox_due ON push_outbox (state, platform, due_at);
