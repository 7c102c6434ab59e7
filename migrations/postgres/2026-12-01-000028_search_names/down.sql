DROP TABLE record_search_names;
