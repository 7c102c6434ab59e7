DROP TRIGGER processes_definitions_version ON processes;
DROP TRIGGER followup_templates_definitions_version ON followup_templates;
DROP TRIGGER sources_definitions_version ON sources;
DROP TRIGGER field_defs_definitions_version ON field_defs;
DROP FUNCTION bump_definitions_version();
DROP TABLE definitions_version;
