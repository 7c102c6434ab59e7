-- How many records each list holds, by the columns a list filters on, kept by the record
-- write path in the transaction of each change: a row per group a batch changed (+ or -),
-- merged into one row per group now and then. A list then shows its exact total without
-- counting a million rows. Filled from `records` at the next start.
CREATE TABLE record_counts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    archived BOOLEAN NOT NULL,
    owner_source_id BIGINT,
    forced_manual BOOLEAN NOT NULL,
    missing_from_source BOOLEAN NOT NULL,
    records BIGINT NOT NULL
);
