-- A source's webhook: batches of its change feed are POSTed to `url`, signed with `secret`
-- (Standard Webhooks). `cursor` is the last feed entry put in a batch.
CREATE TABLE source_webhooks (
    source_id BIGINT PRIMARY KEY REFERENCES sources (id),
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- One batch of feed entries and its delivery: the body is fixed when the batch is made, so
-- every attempt sends the same message (same webhook-id).
CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    url TEXT NOT NULL,
    first_cursor BIGINT NOT NULL,
    last_cursor BIGINT NOT NULL,
    changes INTEGER NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX webhook_deliveries_source_idx ON webhook_deliveries (source_id, id);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
