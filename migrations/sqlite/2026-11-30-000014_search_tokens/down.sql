DROP TABLE record_search;
