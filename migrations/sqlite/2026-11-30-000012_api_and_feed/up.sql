-- API tokens: a random secret (prefix `sdk_`) shown once; only its SHA-256 is kept. Scopes
-- are space-separated words; a token may be restricted to one source.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    source_id BIGINT REFERENCES sources (id),
    created_by BIGINT REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE UNIQUE INDEX api_tokens_secret_idx ON api_tokens (secret_hash);

-- The first answer to a push with an Idempotency-Key, replayed for the same key and body.
CREATE TABLE api_idempotency (
    token_id BIGINT NOT NULL REFERENCES api_tokens (id),
    idempotency_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (token_id, idempotency_key)
);

-- The outbound change feed (a transactional outbox): written by the record write path in the
-- transaction of the change. `seq` is given after commit, in commit order, by one sequencer at
-- a time, so a reader that keeps its last `seq` sees every change once. A `held` change (rule
-- `review`) waits for a person; `dropped` ones never enter the feed.
CREATE TABLE source_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq BIGINT,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    record_id BIGINT NOT NULL,
    external_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('value', 'archived', 'forced_manual', 'linked')),
    column_name TEXT,
    field_key TEXT,
    old_value TEXT,
    new_value TEXT,
    origin TEXT NOT NULL,
    origin_id BIGINT,
    actor_label TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ready', 'held', 'dropped')),
    decided_by TEXT,
    decided_at TIMESTAMP
);
CREATE UNIQUE INDEX source_changes_feed_idx ON source_changes (source_id, seq) WHERE seq IS NOT NULL;
CREATE UNIQUE INDEX source_changes_seq_idx ON source_changes (seq) WHERE seq IS NOT NULL;
CREATE INDEX source_changes_unsequenced_idx ON source_changes (id) WHERE seq IS NULL AND status = 'ready';
CREATE INDEX source_changes_held_idx ON source_changes (source_id, id) WHERE status = 'held';
CREATE INDEX source_changes_age_idx ON source_changes (changed_at);
