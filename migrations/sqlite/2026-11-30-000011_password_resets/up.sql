-- Set when an admin resets a password: the user chooses a new one before anything else.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT 0;
