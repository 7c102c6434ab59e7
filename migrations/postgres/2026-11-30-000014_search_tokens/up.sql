-- The search index of the lists: for each record, its name words, email words and phone
-- digits, folded to lower case without accents, and their text search vector. The GIN index
-- takes new entries into its pending list and merges them in bulk, so an import pays little
-- for it; `word:*` queries serve typed prefixes. Kept by the record write path in the
-- transaction of each change; filled for existing records at start.
CREATE TABLE record_search (
    record_id BIGINT PRIMARY KEY,
    tokens TEXT NOT NULL,
    document tsvector GENERATED ALWAYS AS (to_tsvector('simple', tokens)) STORED
);
CREATE INDEX record_search_document_idx ON record_search USING GIN (document);
