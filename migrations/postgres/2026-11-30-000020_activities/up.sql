-- A contact's activities (calls, emails, meetings, notes, and types an admin adds): kept,
-- never overwritten. An activity a system sends with its own id is stored once per sender
-- (`sender`: 'source:<id>' or 'token:<id>'), so sending it again changes nothing.
CREATE TABLE activity_types (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO activity_types (key, label, builtin, created_at) VALUES
    ('call', 'Call', TRUE, CURRENT_TIMESTAMP),
    ('email', 'Email', TRUE, CURRENT_TIMESTAMP),
    ('meeting', 'Meeting', TRUE, CURRENT_TIMESTAMP),
    ('note', 'Note', TRUE, CURRENT_TIMESTAMP);

CREATE TABLE activities (
    id BIGSERIAL PRIMARY KEY,
    record_id BIGINT NOT NULL REFERENCES records (id),
    activity_type TEXT NOT NULL REFERENCES activity_types (key),
    occurred_at TIMESTAMP NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    -- The attributes it came with, as a JSON object; `outcome` is copied out for filters.
    attributes TEXT NOT NULL DEFAULT '{}',
    outcome TEXT NOT NULL DEFAULT '',
    source_id BIGINT REFERENCES sources (id),
    sender TEXT NOT NULL DEFAULT '',
    external_id TEXT NOT NULL DEFAULT '',
    user_id BIGINT REFERENCES users (id),
    origin TEXT NOT NULL CHECK (origin IN ('user', 'api', 'import')),
    origin_label TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX activities_sent_idx ON activities (sender, external_id) WHERE external_id <> '';
CREATE INDEX activities_record_idx ON activities (record_id, occurred_at, id);
CREATE INDEX activities_time_idx ON activities (occurred_at, id);
CREATE INDEX activities_type_idx ON activities (activity_type, occurred_at, id);
