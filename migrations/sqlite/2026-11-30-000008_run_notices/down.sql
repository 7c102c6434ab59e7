ALTER TABLE import_runs DROP COLUMN flag_confirmed;
ALTER TABLE import_runs DROP COLUMN notice;
