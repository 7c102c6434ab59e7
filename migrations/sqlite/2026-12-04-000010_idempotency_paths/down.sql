CREATE TABLE api_idempotency_keys (
    token_id BIGINT NOT NULL REFERENCES api_tokens (id),
    idempotency_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (token_id, idempotency_key)
);
-- A key used on several paths keeps its first use.
INSERT OR IGNORE INTO api_idempotency_keys
    (token_id, idempotency_key, body_sha256, status_code, response_body, created_at)
SELECT token_id, idempotency_key, body_sha256, status_code, response_body, created_at
FROM api_idempotency ORDER BY created_at;
DROP TABLE api_idempotency;
ALTER TABLE api_idempotency_keys RENAME TO api_idempotency;
