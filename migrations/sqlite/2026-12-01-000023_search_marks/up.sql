-- Email and phone words are now kept with a mark (`records::search::OTHER_MARK`), so that a
-- name search reads the name words alone. The index is refilled at the next start.
DROP TABLE record_search;
CREATE VIRTUAL TABLE record_search USING fts5(
    name,
    other,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
