"""kiln.clean: WARC/HTML or text -> training documents in Parquet, FineWeb-style, with the reason for every drop
(`kiln clean`). The steps (URL filter, extraction, language ID, quality filters, dedup, PII) are small `Step`s
(`pipeline`); `runner` runs them over input shards on an executor."""
