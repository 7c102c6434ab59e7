DROP TABLE data_links;
DROP TABLE application_step_states;
DROP TABLE application_answers;
DROP TABLE application_stakeholders;
DROP TABLE applications;
DROP TABLE process_items;
DROP TABLE process_steps;
DROP TABLE processes;
