ALTER TABLE records ADD CONSTRAINT records_owner_source_id_fkey FOREIGN KEY (owner_source_id) REFERENCES sources (id);
ALTER TABLE record_values ADD CONSTRAINT record_values_record_id_fkey FOREIGN KEY (record_id) REFERENCES records (id) ON DELETE CASCADE;
ALTER TABLE record_values ADD CONSTRAINT record_values_field_id_fkey FOREIGN KEY (field_id) REFERENCES field_defs (id);
ALTER TABLE record_links ADD CONSTRAINT record_links_record_id_fkey FOREIGN KEY (record_id) REFERENCES records (id) ON DELETE CASCADE;
ALTER TABLE record_links ADD CONSTRAINT record_links_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources (id);
ALTER TABLE record_history ADD CONSTRAINT record_history_record_id_fkey FOREIGN KEY (record_id) REFERENCES records (id) ON DELETE CASCADE;
ALTER TABLE record_history ADD CONSTRAINT record_history_actor_id_fkey FOREIGN KEY (actor_id) REFERENCES users (id);
ALTER TABLE import_rows ADD CONSTRAINT import_rows_run_id_fkey FOREIGN KEY (run_id) REFERENCES import_runs (id) ON DELETE CASCADE;
ALTER TABLE import_rows ADD CONSTRAINT import_rows_record_id_fkey FOREIGN KEY (record_id) REFERENCES records (id);
