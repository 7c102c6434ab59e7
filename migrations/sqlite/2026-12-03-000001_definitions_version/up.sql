-- A number that every write to the definitions a list page reads on each request (fields,
-- sources, follow-up templates, processes) moves on, so that a console can keep them in
-- memory and learn that they changed, on this console or another, from the statement that
-- finds the signed-in user (see `records::definitions`).
CREATE TABLE definitions_version (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO definitions_version (id, version) VALUES (1, 1);

CREATE TRIGGER field_defs_insert_definitions_version AFTER INSERT ON field_defs
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER field_defs_update_definitions_version AFTER UPDATE ON field_defs
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER field_defs_delete_definitions_version AFTER DELETE ON field_defs
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER sources_insert_definitions_version AFTER INSERT ON sources
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER sources_update_definitions_version AFTER UPDATE ON sources
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER sources_delete_definitions_version AFTER DELETE ON sources
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER followup_templates_insert_definitions_version AFTER INSERT ON followup_templates
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER followup_templates_update_definitions_version AFTER UPDATE ON followup_templates
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER followup_templates_delete_definitions_version AFTER DELETE ON followup_templates
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER processes_insert_definitions_version AFTER INSERT ON processes
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER processes_update_definitions_version AFTER UPDATE ON processes
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER processes_delete_definitions_version AFTER DELETE ON processes
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
END;
