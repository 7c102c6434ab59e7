-- Identity matching looks a row up by its whole key (normalised name, email and phone): by
-- name alone, a chunk of an import read every record sharing a name with one of its rows,
-- dozens each in a real file, more as the table grew.
CREATE INDEX records_identity_idx ON records (kind, archived, name_norm, email_norm, phone_norm);
