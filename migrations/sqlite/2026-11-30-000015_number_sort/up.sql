-- A number field's values as numbers, beside their text, with an index of their own: a list
-- sorted by a number field reads that index in order instead of sorting every record. Only
-- number fields fill it, so other values cost the index nothing.
ALTER TABLE record_values ADD COLUMN number DOUBLE PRECISION;
UPDATE record_values SET number = CAST(value AS REAL)
WHERE field_id IN (SELECT id FROM field_defs WHERE field_type = 'number') AND trim(value) <> '';
CREATE INDEX record_values_number_idx ON record_values (field_id, number, record_id) WHERE number IS NOT NULL;
