-- A source may match rows by fields (email, or name + email) when its files have no id
-- column, and may read phone numbers written without a country as its own country's.
ALTER TABLE sources ADD COLUMN match_by TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN country TEXT NOT NULL DEFAULT '';
