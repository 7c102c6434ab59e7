-- Email and phone words are marked in the search vector instead of weighted: a name search
-- then needs no weights, and the GIN index no longer re-checks each match in the table.
-- The index is refilled in the new form at the next start.
TRUNCATE record_search;
