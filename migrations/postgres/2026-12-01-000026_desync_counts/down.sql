DROP TABLE desync_counts;
