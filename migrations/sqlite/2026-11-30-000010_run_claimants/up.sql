-- Which process runs a run ("serve 1234@host" or "cli 1234@host"): a run it no longer holds
-- (cancelled, or taken over after it went silent) stops at its next chunk, and a refusal can
-- say who holds a source. And runs can be cancelled: SQLite cannot change a CHECK constraint
-- in place, so the table is rebuilt (the documented twelve steps; this migration runs outside
-- diesel's transaction so that foreign keys can be off while the table is swapped).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE import_runs_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
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
    finished_at TIMESTAMP,
    undo_status TEXT CHECK (undo_status IN ('queued', 'running', 'done', 'failed')),
    undo_by BIGINT REFERENCES users (id),
    undo_by_label TEXT,
    undo_rows_done BIGINT NOT NULL DEFAULT 0,
    undo_cursor_line BIGINT,
    undo_cursor_id BIGINT,
    undo_error TEXT,
    undo_heartbeat_at TIMESTAMP,
    notice TEXT,
    flag_confirmed BOOLEAN NOT NULL DEFAULT 0,
    claimed_by TEXT
);
INSERT INTO import_runs_rebuilt (
    id, source_id, status, dry_run, mode, file_name, file_sha256, encoding, delimiter, plan_of,
    started_by, started_by_label, rows_total, rows_done, counts, error, undo_report, undone_at,
    created_at, started_at, heartbeat_at, finished_at, undo_status, undo_by, undo_by_label,
    undo_rows_done, undo_cursor_line, undo_cursor_id, undo_error, undo_heartbeat_at, notice,
    flag_confirmed, claimed_by)
SELECT
    id, source_id, status, dry_run, mode, file_name, file_sha256, encoding, delimiter, plan_of,
    started_by, started_by_label, rows_total, rows_done, counts, error, undo_report, undone_at,
    created_at, started_at, heartbeat_at, finished_at, undo_status, undo_by, undo_by_label,
    undo_rows_done, undo_cursor_line, undo_cursor_id, undo_error, undo_heartbeat_at, notice,
    flag_confirmed,
    -- Runs running before this column existed: held by an unknown process.
    CASE WHEN status = 'running' THEN '' END
FROM import_runs;
DROP TABLE import_runs;
ALTER TABLE import_runs_rebuilt RENAME TO import_runs;
CREATE UNIQUE INDEX import_runs_one_active_idx ON import_runs (source_id) WHERE status IN ('queued', 'running');
CREATE INDEX import_runs_source_idx ON import_runs (source_id, id);
CREATE INDEX import_runs_status_idx ON import_runs (status, id);
CREATE INDEX import_runs_undo_idx ON import_runs (undo_status, id) WHERE undo_status IN ('queued', 'running');
COMMIT;
PRAGMA foreign_keys = ON;
