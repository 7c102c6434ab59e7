-- Cancelled runs would break the old CHECK constraint: they read as failed.
UPDATE import_runs SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE import_runs DROP COLUMN claimed_by;
