DROP TABLE record_counts;
