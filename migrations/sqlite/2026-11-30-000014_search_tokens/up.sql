-- The search index of the lists: a record's name words, email and phone digits, folded
-- (lower case, no accents), one row each. A search is a prefix range on `token`. Kept by the
-- record write path in the transaction of each change; filled for existing records at start.
CREATE TABLE record_search (
    token TEXT NOT NULL,
    record_id BIGINT NOT NULL,
    PRIMARY KEY (token, record_id)
) WITHOUT ROWID;
