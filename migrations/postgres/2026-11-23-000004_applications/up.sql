-- Processes: application templates for a record kind, with ordered steps and their items.
CREATE TABLE processes (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('contact', 'company')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE process_steps (
    id BIGSERIAL PRIMARY KEY,
    process_id BIGINT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    per_stakeholder BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX process_steps_process_idx ON process_steps (process_id, position);

CREATE TABLE process_items (
    id BIGSERIAL PRIMARY KEY,
    process_id BIGINT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    step_id BIGINT NOT NULL REFERENCES process_steps (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    label TEXT NOT NULL,
    item_type TEXT NOT NULL CHECK (item_type IN ('text', 'email', 'phone', 'date', 'number', 'list', 'document')),
    required BOOLEAN NOT NULL DEFAULT FALSE,
    options TEXT NOT NULL DEFAULT '',
    UNIQUE (process_id, key)
);
CREATE INDEX process_items_step_idx ON process_items (step_id, position);

-- An instance of a process for a record, with stakeholders and answers.
CREATE TABLE applications (
    id BIGSERIAL PRIMARY KEY,
    process_id BIGINT NOT NULL REFERENCES processes (id),
    record_id BIGINT NOT NULL REFERENCES records (id),
    status TEXT NOT NULL CHECK (status IN ('draft', 'submitted')),
    created_by BIGINT REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    submitted_at TIMESTAMP
);
CREATE INDEX applications_process_idx ON applications (process_id, id);
CREATE INDEX applications_record_idx ON applications (record_id, id);

CREATE TABLE application_stakeholders (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES records (id),
    role TEXT NOT NULL,
    UNIQUE (application_id, contact_id, role)
);

-- stakeholder_id 0 is a shared step's answer (0 rather than NULL: both databases then treat
-- the unique key alike).
CREATE TABLE application_answers (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    item_id BIGINT NOT NULL REFERENCES process_items (id) ON DELETE CASCADE,
    stakeholder_id BIGINT NOT NULL DEFAULT 0,
    value TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('prefill', 'typed')),
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (application_id, item_id, stakeholder_id)
);

CREATE TABLE application_step_states (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    step_id BIGINT NOT NULL REFERENCES process_steps (id) ON DELETE CASCADE,
    submitted_at TIMESTAMP NOT NULL,
    UNIQUE (application_id, step_id)
);

-- Data links: an application item connected to a record field, per process.
CREATE TABLE data_links (
    id BIGSERIAL PRIMARY KEY,
    process_id BIGINT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    direction TEXT NOT NULL CHECK (direction IN ('to_application', 'to_record', 'both')),
    record_kind TEXT NOT NULL CHECK (record_kind IN ('contact', 'company')),
    data_kind TEXT NOT NULL CHECK (data_kind IN ('information', 'document')),
    item_id BIGINT NOT NULL REFERENCES process_items (id) ON DELETE CASCADE,
    field_key TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '',
    to_record TEXT NOT NULL CHECK (to_record IN ('always', 'fill_blanks', 'review', 'never')),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX data_links_process_idx ON data_links (process_id);
