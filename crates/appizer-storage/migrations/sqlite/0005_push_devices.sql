-- Push devices: a person's app installs and browsers, by the distinct id they were
-- registered with (the person is that id's person now, so merges, splits and deletions
-- are followed). `address` is the APNs or FCM token, or the Web Push endpoint.
-- Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE push_devices (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    address TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    distinct_id TEXT NOT NULL,
    app_id TEXT,
    locale TEXT,
    timezone TEXT,
    state TEXT NOT NULL,
    retired_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX push_devices_by_address ON push_devices (project_id, platform, address);
CREATE INDEX push_devices_by_distinct_id ON push_devices (project_id, distinct_id);
