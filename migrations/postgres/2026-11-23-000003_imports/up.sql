-- One import through a source: a background job, its counts, and one outcome row per input row.
CREATE TABLE import_runs (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    dry_run BOOLEAN NOT NULL,
    mode TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    encoding TEXT NOT NULL,
    delimiter TEXT NOT NULL,
    plan_of BIGINT REFERENCES import_runs (id),
    started_by BIGINT REFERENCES users (id),
    started_by_label TEXT NOT NULL,
    rows_total BIGINT NOT NULL DEFAULT 0,
    rows_done BIGINT NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    undo_report TEXT,
    undone_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    heartbeat_at TIMESTAMP,
    finished_at TIMESTAMP
);
-- One queued or running import per source, enforced by the database for every instance.
CREATE UNIQUE INDEX import_runs_one_active_idx ON import_runs (source_id) WHERE status IN ('queued', 'running');
CREATE INDEX import_runs_source_idx ON import_runs (source_id, id);
CREATE INDEX import_runs_status_idx ON import_runs (status, id);

CREATE TABLE import_rows (
    id BIGSERIAL PRIMARY KEY,
    run_id BIGINT NOT NULL REFERENCES import_runs (id) ON DELETE CASCADE,
    line BIGINT NOT NULL,
    external_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record_id BIGINT REFERENCES records (id),
    reason TEXT NOT NULL,
    changes TEXT NOT NULL DEFAULT '[]',
    candidates TEXT NOT NULL DEFAULT '[]',
    row_values TEXT NOT NULL DEFAULT '{}',
    record_created BOOLEAN NOT NULL DEFAULT FALSE,
    link_added BOOLEAN NOT NULL DEFAULT FALSE,
    previous_owner BIGINT,
    owner_changed BOOLEAN NOT NULL DEFAULT FALSE,
    record_updated_at TIMESTAMP
);
CREATE INDEX import_rows_run_idx ON import_rows (run_id, line);
CREATE INDEX import_rows_outcome_idx ON import_rows (run_id, outcome, line);
CREATE INDEX import_rows_external_idx ON import_rows (run_id, external_id);

-- A pending change to one field of one record, waiting for a person.
CREATE TABLE proposals (
    id BIGSERIAL PRIMARY KEY,
    record_id BIGINT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    field_key TEXT NOT NULL,
    current_value TEXT NOT NULL,
    proposed_value TEXT NOT NULL,
    origin TEXT NOT NULL,
    origin_id BIGINT,
    origin_label TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'kept', 'new_value', 'replaced')),
    decided_by TEXT,
    decided_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX proposals_pending_idx ON proposals (record_id, field_key) WHERE status = 'pending';
CREATE INDEX proposals_status_idx ON proposals (status, record_id);
