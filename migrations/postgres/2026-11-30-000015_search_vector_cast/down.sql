ALTER TABLE record_search DROP COLUMN document;
ALTER TABLE record_search ADD COLUMN document tsvector GENERATED ALWAYS AS (to_tsvector('simple', tokens)) STORED;
CREATE INDEX record_search_document_idx ON record_search USING GIN (document);
