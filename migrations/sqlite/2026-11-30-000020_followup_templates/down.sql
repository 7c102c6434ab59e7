DROP TABLE followup_templates;
