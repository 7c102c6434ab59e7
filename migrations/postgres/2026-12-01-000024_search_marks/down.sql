-- Refilled in the previous form at the next start.
TRUNCATE record_search;
