ALTER TABLE sources DROP COLUMN query_last_at;
ALTER TABLE sources DROP COLUMN query_every_minutes;
ALTER TABLE sources DROP COLUMN query_url_secret;
ALTER TABLE sources DROP COLUMN query_url_env;
ALTER TABLE sources DROP COLUMN query_sql;
ALTER TABLE sources DROP COLUMN watch_dir;
ALTER TABLE sources DROP COLUMN country;
ALTER TABLE sources DROP COLUMN match_by;
