-- The name words of the search index, one row per word and record, in a B-tree: the records
-- with a given name word are read from it in id order, a page's worth at a time, where the
-- GIN index gives every match of a prefix at once (26,000 for "smith" at a million records)
-- on every page. Kept by the write path with the search vector; filled here from it (name
-- words are the vector's unmarked words).
CREATE TABLE record_search_names (
    word TEXT COLLATE "C" NOT NULL,
    record_id BIGINT NOT NULL,
    PRIMARY KEY (word, record_id)
);
INSERT INTO record_search_names (word, record_id)
SELECT DISTINCT w, s.record_id
FROM record_search s, unnest(string_to_array(s.tokens, ' ')) AS w
WHERE w <> '' AND left(w, 1) <> '_';
ANALYZE record_search_names;
