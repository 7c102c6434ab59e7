-- A number that every write to the definitions a list page reads on each request (fields,
-- sources, follow-up templates, processes) moves on, so that a console can keep them in
-- memory and learn that they changed, on this console or another, from the statement that
-- finds the signed-in user (see `records::definitions`).
CREATE TABLE definitions_version (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO definitions_version (id, version) VALUES (1, 1);

CREATE FUNCTION bump_definitions_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE definitions_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER field_defs_definitions_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON field_defs
    FOR EACH STATEMENT EXECUTE FUNCTION bump_definitions_version();
CREATE TRIGGER sources_definitions_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sources
    FOR EACH STATEMENT EXECUTE FUNCTION bump_definitions_version();
CREATE TRIGGER followup_templates_definitions_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON followup_templates
    FOR EACH STATEMENT EXECUTE FUNCTION bump_definitions_version();
CREATE TRIGGER processes_definitions_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON processes
    FOR EACH STATEMENT EXECUTE FUNCTION bump_definitions_version();
