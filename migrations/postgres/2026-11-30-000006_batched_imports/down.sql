DROP INDEX records_company_idx;
CREATE INDEX records_company_idx ON records (company_id);
CREATE INDEX import_rows_external_idx ON import_rows (run_id, external_id);
CREATE INDEX records_identity_idx ON records (kind, name_norm, email_norm, phone_norm);
ALTER TABLE sources DROP COLUMN on_invalid;
