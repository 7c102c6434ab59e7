ALTER TABLE sources DROP COLUMN country;
ALTER TABLE sources DROP COLUMN match_by;
