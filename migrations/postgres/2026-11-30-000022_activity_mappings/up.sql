-- Activity data mapping (admins): per source and activity type, templates that write an
-- activity's subject and body from its attributes, and field updates (a field, a template,
-- a rule) applied to the contact through the write path.
CREATE TABLE activity_mappings (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    activity_type TEXT NOT NULL REFERENCES activity_types (key),
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    field_updates TEXT NOT NULL DEFAULT '[]',
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (source_id, activity_type)
);
