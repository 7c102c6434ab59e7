-- An Idempotency-Key is scoped by token and request path, so the same key on another
-- source's push path (or another route) is a new request. SQLite cannot change a primary key:
-- the table is rebuilt. Old rows were all pushes: each gets the push path of the source its
-- answer names, else of the token's own source, else '' (a push that never answered).
CREATE TABLE api_idempotency_paths (
    token_id BIGINT NOT NULL REFERENCES api_tokens (id),
    request_path TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (token_id, request_path, idempotency_key)
);
INSERT INTO api_idempotency_paths
    (token_id, request_path, idempotency_key, body_sha256, status_code, response_body, created_at)
SELECT i.token_id,
       COALESCE('/api/v1/sources/' || COALESCE(
           CASE WHEN json_valid(i.response_body)
                THEN json_extract(i.response_body, '$.source_id') END,
           t.source_id) || '/rows', ''),
       i.idempotency_key, i.body_sha256, i.status_code, i.response_body, i.created_at
FROM api_idempotency i LEFT JOIN api_tokens t ON t.id = i.token_id;
DROP TABLE api_idempotency;
ALTER TABLE api_idempotency_paths RENAME TO api_idempotency;
