DELETE FROM record_search;
