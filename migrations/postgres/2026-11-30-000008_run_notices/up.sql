-- What a finished run wants a person to know (for example that it flagged nothing), and
-- whether the person confirmed flagging more than a tenth of a source's records.
ALTER TABLE import_runs ADD COLUMN notice TEXT;
ALTER TABLE import_runs ADD COLUMN flag_confirmed BOOLEAN NOT NULL DEFAULT false;
