-- What an import does with a row whose value in one field is invalid: skip that field (and
-- say so on the row) or reject the whole row.
ALTER TABLE sources ADD COLUMN on_invalid TEXT NOT NULL DEFAULT 'skip_field'
    CHECK (on_invalid IN ('skip_field', 'reject_row'));

-- Fewer indexes on the two tables an import writes most (each costs on every row written):
-- identity matching reads records_list_name_idx (kind, archived, name_norm) and compares
-- email and phone on the few rows of that name; duplicate ids in a file are found in memory;
-- most records have no company; the records a source owns are reached through its links; a
-- list sorted by phone is rare enough to be sorted when asked (search by phone belongs to
-- the search index of the lists issue).
DROP INDEX records_identity_idx;
DROP INDEX records_owner_idx;
DROP INDEX records_list_phone_idx;
DROP INDEX import_rows_external_idx;
DROP INDEX records_company_idx;
CREATE INDEX records_company_idx ON records (company_id) WHERE company_id IS NOT NULL;

-- Undo runs as a background job, a page of report lines per transaction: its state, who asked,
-- how far it got (the cursor lets a crashed undo resume) and how it ended.
ALTER TABLE import_runs ADD COLUMN undo_status TEXT CHECK (undo_status IN ('queued', 'running', 'done', 'failed'));
ALTER TABLE import_runs ADD COLUMN undo_by BIGINT REFERENCES users (id);
ALTER TABLE import_runs ADD COLUMN undo_by_label TEXT;
ALTER TABLE import_runs ADD COLUMN undo_rows_done BIGINT NOT NULL DEFAULT 0;
ALTER TABLE import_runs ADD COLUMN undo_cursor_line BIGINT;
ALTER TABLE import_runs ADD COLUMN undo_cursor_id BIGINT;
ALTER TABLE import_runs ADD COLUMN undo_error TEXT;
ALTER TABLE import_runs ADD COLUMN undo_heartbeat_at TIMESTAMP;
CREATE INDEX import_runs_undo_idx ON import_runs (undo_status, id) WHERE undo_status IN ('queued', 'running');
