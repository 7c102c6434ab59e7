-- A source may match rows by fields (email, or name + email) when its files have no id
-- column, may read phone numbers written without a country as its own country's, and may
-- import the files that appear in a watched folder, and may read its rows from a query on
-- another database (its URL encrypted, or named by an environment variable).
ALTER TABLE sources ADD COLUMN match_by TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN watch_dir TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN query_sql TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN query_url_env TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN query_url_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN query_every_minutes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN query_last_at TIMESTAMP;
