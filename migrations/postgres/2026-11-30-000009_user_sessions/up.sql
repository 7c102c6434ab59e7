-- A signed-in browser: its cookie holds a random token, this table its hash. Signing out,
-- changing a password, deactivation and "sign out everywhere" end rows here, so a copied
-- cookie stops working at once.
CREATE TABLE user_sessions (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP
);
CREATE UNIQUE INDEX user_sessions_token_idx ON user_sessions (token_hash);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id, ended_at);
