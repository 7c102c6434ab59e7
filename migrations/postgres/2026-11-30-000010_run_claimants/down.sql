UPDATE import_runs SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE import_runs DROP CONSTRAINT import_runs_status_check;
ALTER TABLE import_runs ADD CONSTRAINT import_runs_status_check
    CHECK (status IN ('queued', 'running', 'done', 'failed'));
ALTER TABLE import_runs DROP COLUMN claimed_by;
