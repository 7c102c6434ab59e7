-- How many records wait for a review decision and on how many fields, per record kind, kept
-- by the proposal writes in their transaction: a row per kind a batch changed (+ or -), merged
-- now and then. The desynchronised view then shows exact totals without grouping every
-- pending proposal. Filled from `proposals` at the next start.
CREATE TABLE desync_counts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_kind TEXT NOT NULL,
    records BIGINT NOT NULL,
    fields BIGINT NOT NULL
);
