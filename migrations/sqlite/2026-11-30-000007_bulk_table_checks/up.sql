-- Nothing to do: SQLite checks a foreign key with an index lookup in the same call, and
-- dropping one would mean rebuilding the table. (PostgreSQL drops some in this migration.)
SELECT 1;
