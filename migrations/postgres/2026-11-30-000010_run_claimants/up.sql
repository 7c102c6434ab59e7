-- Which process runs a run ("serve 1234@host" or "cli 1234@host"): a run it no longer holds
-- (cancelled, or taken over after it went silent) stops at its next chunk, and a refusal can
-- say who holds a source. And runs can be cancelled.
ALTER TABLE import_runs ADD COLUMN claimed_by TEXT;
-- Runs running before this column existed: held by an unknown process.
UPDATE import_runs SET claimed_by = '' WHERE status = 'running';
ALTER TABLE import_runs DROP CONSTRAINT import_runs_status_check;
ALTER TABLE import_runs ADD CONSTRAINT import_runs_status_check
    CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled'));
