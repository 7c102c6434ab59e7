-- The desynchronised-records view filters pending proposals by record kind, source and process;
-- these copies (a record's kind never changes, nor a run's source or an application's process)
-- let partial indexes serve those filters (and kind with either) without joins or table reads.
ALTER TABLE proposals ADD COLUMN record_kind TEXT NOT NULL DEFAULT 'contact';
ALTER TABLE proposals ADD COLUMN source_id BIGINT REFERENCES sources (id);
ALTER TABLE proposals ADD COLUMN process_id BIGINT REFERENCES processes (id);
-- The value written by a "new value" decision, to tell a second reviewer what was decided.
ALTER TABLE proposals ADD COLUMN decided_value TEXT;

UPDATE proposals SET record_kind = (SELECT kind FROM records WHERE records.id = proposals.record_id);
UPDATE proposals SET source_id = (SELECT source_id FROM import_runs WHERE import_runs.id = proposals.origin_id)
    WHERE origin = 'import';
UPDATE proposals SET process_id = (SELECT process_id FROM applications WHERE applications.id = proposals.origin_id)
    WHERE origin = 'application';

CREATE INDEX proposals_pending_kind_idx ON proposals (record_kind, record_id) WHERE status = 'pending';
CREATE INDEX proposals_pending_source_idx ON proposals (source_id, record_id, record_kind) WHERE status = 'pending';
CREATE INDEX proposals_pending_process_idx ON proposals (process_id, record_id, record_kind) WHERE status = 'pending';
-- A record's earlier (decided or replaced) proposals, newest first, on the check-data page.
CREATE INDEX proposals_record_idx ON proposals (record_id, id);
