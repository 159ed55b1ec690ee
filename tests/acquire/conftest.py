"""Tests of kiln.acquire: crawler (against a real site served on 127.0.0.1 by crawl_site.py) and WARC/WET/ARC
ingestion.

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
