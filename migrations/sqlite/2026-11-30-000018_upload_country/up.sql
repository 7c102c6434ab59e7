-- The country of phone numbers written without one, chosen for one upload in its preview;
-- empty: the source's, else the console's.
ALTER TABLE import_runs ADD COLUMN country TEXT NOT NULL DEFAULT '';
