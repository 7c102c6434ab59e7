-- The search vector is the tokens themselves: the write path already splits, folds and
-- strips them to letters and digits, so a cast builds it without running the text search
-- parser again for every record (a fifth of the index's cost on a first import).
ALTER TABLE record_search DROP COLUMN document;
ALTER TABLE record_search ADD COLUMN document tsvector GENERATED ALWAYS AS (tokens::tsvector) STORED;
CREATE INDEX record_search_document_idx ON record_search USING GIN (document);
