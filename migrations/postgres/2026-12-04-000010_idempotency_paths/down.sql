-- A key used on several paths keeps its first use.
DELETE FROM api_idempotency a
USING api_idempotency b
WHERE a.token_id = b.token_id AND a.idempotency_key = b.idempotency_key
  AND (a.created_at, a.request_path) > (b.created_at, b.request_path);
ALTER TABLE api_idempotency DROP CONSTRAINT api_idempotency_pkey;
ALTER TABLE api_idempotency DROP COLUMN request_path;
ALTER TABLE api_idempotency ADD PRIMARY KEY (token_id, idempotency_key);
