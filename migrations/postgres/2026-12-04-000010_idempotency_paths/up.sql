-- An Idempotency-Key is scoped by token and request path, so the same key on another
-- source's push path (or another route) is a new request. Old rows were all pushes: each gets
-- the push path of the source its answer names, else of the token's own source, else '' (a
-- push that never answered).
ALTER TABLE api_idempotency ADD COLUMN request_path TEXT NOT NULL DEFAULT '';
UPDATE api_idempotency i
SET request_path = COALESCE('/api/v1/sources/' || COALESCE(
        CASE WHEN i.response_body LIKE '{%'
             THEN i.response_body::jsonb ->> 'source_id' END,
        t.source_id::text) || '/rows', '')
FROM api_tokens t
WHERE t.id = i.token_id;
ALTER TABLE api_idempotency ALTER COLUMN request_path DROP DEFAULT;
ALTER TABLE api_idempotency DROP CONSTRAINT api_idempotency_pkey;
ALTER TABLE api_idempotency ADD PRIMARY KEY (token_id, request_path, idempotency_key);
