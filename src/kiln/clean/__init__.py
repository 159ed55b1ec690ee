"""kiln.clean: WARC/HTML or text -> training documents in Parquet, FineWeb-style, with the reason for every drop
(`kiln clean`). The steps (URL filter, extraction, language ID, quality filters, dedup, PII) are small `Step`s
(`pipeline`) named in a registry (`registry`); `runner` runs them over input shards on an executor
(`executors`: this process, local processes or Ray). The stage contract: `run(CleanConfig) -> CleanSummary`."""

from kiln.clean.config import CleanConfig
from kiln.clean.runner import run
from kiln.clean.summary import CleanSummary

__all__ = ["CleanConfig", "CleanSummary", "run"]
