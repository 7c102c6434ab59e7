-- The search index of the lists: for each record (rowid = record id), its name words, email
-- words and phone digits, folded to lower case without accents. FTS5 appends to segments it
-- merges later, so an import pays little for it; prefix indexes serve typed prefixes. Kept by
-- the record write path in the transaction of each change; filled for existing records at
-- start.
CREATE VIRTUAL TABLE record_search USING fts5(
    tokens,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
