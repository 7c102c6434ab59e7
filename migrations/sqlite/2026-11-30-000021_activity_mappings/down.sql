DROP TABLE activity_mappings;
