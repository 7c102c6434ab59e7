-- The newest activities a source sent of a type: the variables and sample of its mapping page.
CREATE INDEX activities_source_type_idx ON activities (source_id, activity_type, id);
