"""kiln.acquire: getting web text — a polite, resumable crawler (`kiln crawl`) and Common Crawl WARC/WET/ARC
reading and writing (`kiln ingest`). Output: WARC files, the format `kiln clean` reads.

The two stages, by the stage contract: `run_crawl(CrawlConfig) -> CrawlSummary` (`kiln.acquire.crawl.run`) and
`run_ingest(IngestConfig) -> IngestSummary` (`kiln.acquire.ingest.run`). They are imported on first use, so
that `kiln.clean`'s workers, which only read WARC (`kiln.acquire.warc`), do not load the crawler's HTTP client.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CrawlConfig": "kiln.acquire.crawl_config:CrawlConfig",
    "CrawlSummary": "kiln.acquire.crawl_summary:CrawlSummary",
    "run_crawl": "kiln.acquire.crawl:run",
    "IngestConfig": "kiln.acquire.ingest_config:IngestConfig",
    "IngestSummary": "kiln.acquire.ingest_summary:IngestSummary",
    "run_ingest": "kiln.acquire.ingest:run",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kiln.acquire' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
