DROP TABLE documents;
DROP TABLE record_history;
DROP TABLE record_links;
DROP TABLE record_values;
DROP TABLE records;
DROP TABLE source_fields;
DROP TABLE sources;
DROP TABLE field_defs;
