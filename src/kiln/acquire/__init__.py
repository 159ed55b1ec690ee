"""kiln.acquire: getting web text — a polite, resumable crawler (`kiln crawl`) and Common Crawl WARC/WET/ARC
reading and writing (`kiln ingest`). Output: WARC files, the format `kiln clean` reads."""
