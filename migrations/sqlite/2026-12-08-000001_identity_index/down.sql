DROP INDEX records_identity_idx;
