DROP INDEX proposals_record_idx;
DROP INDEX proposals_pending_process_idx;
DROP INDEX proposals_pending_source_idx;
DROP INDEX proposals_pending_kind_idx;
ALTER TABLE proposals DROP COLUMN decided_value;
ALTER TABLE proposals DROP COLUMN process_id;
ALTER TABLE proposals DROP COLUMN source_id;
ALTER TABLE proposals DROP COLUMN record_kind;
