-- A source may carry activities instead of records: each row of its files logs one activity
-- (its id column is the activity's id) on a contact found by id, by email, or by the external
-- id of another source (`contacts_from`). `activity_type` is the type of rows whose file has
-- no type column.
ALTER TABLE sources ADD COLUMN carries TEXT NOT NULL DEFAULT 'records'
    CHECK (carries IN ('records', 'activities'));
ALTER TABLE sources ADD COLUMN contacts_from BIGINT REFERENCES sources (id);
ALTER TABLE sources ADD COLUMN activity_type TEXT NOT NULL DEFAULT '';
