"""kiln.data: acquiring web text (crawler, Common Crawl WARC/WET/ARC ingestion) and, later, cleaning it."""
