ALTER TABLE sources DROP COLUMN watch_dir;
ALTER TABLE sources DROP COLUMN country;
ALTER TABLE sources DROP COLUMN match_by;
