DROP TABLE source_changes;
DROP TABLE api_idempotency;
DROP TABLE api_tokens;
