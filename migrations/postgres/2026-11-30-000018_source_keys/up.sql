-- A source may match rows by fields (email, or name + email) when its files have no id
-- column, may read phone numbers written without a country as its own country's, and may
-- import the files that appear in a watched folder.
ALTER TABLE sources ADD COLUMN match_by TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN watch_dir TEXT NOT NULL DEFAULT '';
