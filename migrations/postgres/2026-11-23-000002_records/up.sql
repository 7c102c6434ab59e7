-- Field definitions per record kind: built-ins (stored as columns of records) and custom fields
-- (stored in record_values).
CREATE TABLE field_defs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('contact', 'company')),
    key TEXT NOT NULL,
    label TEXT NOT NULL,
    field_type TEXT NOT NULL CHECK (field_type IN ('text', 'email', 'phone', 'date', 'number', 'list', 'document')),
    options TEXT NOT NULL DEFAULT '',
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    position INTEGER NOT NULL DEFAULT 0,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (kind, key)
);

-- External systems. Their import engine and pages come with the sources issue; the tables are
-- here because ownership, links and read-only fields of records depend on them.
CREATE TABLE sources (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('contact', 'company')),
    id_column TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'delta')),
    status TEXT NOT NULL DEFAULT 'connected' CHECK (status IN ('connected', 'disconnected')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- A source column mapped to a field, with one rule per direction.
CREATE TABLE source_fields (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    column_name TEXT NOT NULL,
    field_key TEXT NOT NULL,
    to_record TEXT NOT NULL CHECK (to_record IN ('always', 'fill_blanks', 'review', 'never')),
    to_source TEXT NOT NULL CHECK (to_source IN ('always', 'fill_blanks', 'review', 'never')),
    blanks_clear BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (source_id, column_name)
);

CREATE TABLE records (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('contact', 'company')),
    name TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    registration_number TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    -- Normalised copies for identity matching and prefix search.
    name_norm TEXT NOT NULL,
    email_norm TEXT NOT NULL DEFAULT '',
    phone_norm TEXT NOT NULL DEFAULT '',
    company_id BIGINT REFERENCES records (id),
    owner_source_id BIGINT REFERENCES sources (id),
    forced_manual BOOLEAN NOT NULL DEFAULT FALSE,
    missing_from_source BOOLEAN NOT NULL DEFAULT FALSE,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX records_list_name_idx ON records (kind, archived, name_norm, id);
CREATE INDEX records_list_email_idx ON records (kind, archived, email_norm, id);
CREATE INDEX records_list_phone_idx ON records (kind, archived, phone_norm, id);
CREATE INDEX records_list_updated_idx ON records (kind, archived, updated_at, id);
CREATE INDEX records_identity_idx ON records (kind, name_norm, email_norm, phone_norm);
CREATE INDEX records_company_idx ON records (company_id);
CREATE INDEX records_owner_idx ON records (owner_source_id);

CREATE TABLE record_values (
    record_id BIGINT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    field_id BIGINT NOT NULL REFERENCES field_defs (id),
    value TEXT NOT NULL,
    PRIMARY KEY (record_id, field_id)
);
CREATE INDEX record_values_sort_idx ON record_values (field_id, value, record_id);

-- The "metadata": (source, external id) pairs. They survive a disconnect.
CREATE TABLE record_links (
    id BIGSERIAL PRIMARY KEY,
    record_id BIGINT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    external_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (source_id, external_id)
);
CREATE INDEX record_links_record_idx ON record_links (record_id);

-- Every change of a value: who or what made it, and when.
CREATE TABLE record_history (
    id BIGSERIAL PRIMARY KEY,
    record_id BIGINT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    field_key TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    origin TEXT NOT NULL,
    origin_id BIGINT,
    actor_id BIGINT REFERENCES users (id),
    actor_label TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL
);
CREATE INDEX record_history_record_idx ON record_history (record_id, id);

-- Uploaded files, stored content-addressed in the data folder under their SHA-256.
CREATE TABLE documents (
    id BIGSERIAL PRIMARY KEY,
    sha256 TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded_by BIGINT REFERENCES users (id),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX documents_sha_idx ON documents (sha256);

INSERT INTO field_defs (kind, key, label, field_type, builtin, position, created_at, updated_at) VALUES
    ('contact', 'name', 'Name', 'text', TRUE, 1, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('contact', 'email', 'Email', 'email', TRUE, 2, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('contact', 'phone', 'Phone', 'phone', TRUE, 3, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('company', 'name', 'Name', 'text', TRUE, 1, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('company', 'email', 'Email', 'email', TRUE, 2, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('company', 'phone', 'Phone', 'phone', TRUE, 3, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('company', 'registration_number', 'Registration number', 'text', TRUE, 4, (now() at time zone 'utc'), (now() at time zone 'utc')),
    ('company', 'address', 'Address', 'text', TRUE, 5, (now() at time zone 'utc'), (now() at time zone 'utc'));
