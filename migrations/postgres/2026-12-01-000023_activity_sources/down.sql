ALTER TABLE sources DROP COLUMN activity_type;
ALTER TABLE sources DROP COLUMN contacts_from;
ALTER TABLE sources DROP COLUMN carries;
