-- The name words of the search index, each once: a typed prefix longer than FTS5's prefix
-- index (3 letters) is looked up here and asked of the index as the few words it covers,
-- which FTS5 reads lazily, instead of as a prefix, for which it merges every match of every
-- word it covers on each query. Kept by the write path with the index; filled at the next
-- start.
CREATE TABLE record_search_words (word TEXT PRIMARY KEY) WITHOUT ROWID;
