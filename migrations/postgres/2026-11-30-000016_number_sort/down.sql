DROP INDEX record_values_number_idx;
ALTER TABLE record_values DROP COLUMN number;
