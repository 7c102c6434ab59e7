-- Back to unmarked words: refilled at the next start.
DROP TABLE record_search;
CREATE VIRTUAL TABLE record_search USING fts5(
    name,
    other,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
