-- Push provider credentials per project: the settings that may be shown, and the
-- secret part sealed under the server's master key (base64 of nonce and ciphertext).
CREATE TABLE push_providers (
    project_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    settings TEXT NOT NULL,
    sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, provider)
);
