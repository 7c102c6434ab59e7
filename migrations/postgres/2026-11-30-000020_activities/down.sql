DROP TABLE activities;
DROP TABLE activity_types;
