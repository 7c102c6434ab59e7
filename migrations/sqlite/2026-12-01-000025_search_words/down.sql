DROP TABLE record_search_words;
