-- The tokens become a text search vector literal with the name's words at weight A, so that
-- a search can list the records whose name matches before those found by email or phone.
-- The index is refilled in the new form at the next start.
DELETE FROM record_search;
