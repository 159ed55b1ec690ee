"""Helpers shared by the crawler tests: fast settings, reading a crawl's WARC output and SQLite state back."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from crawl_site import Request, SiteServer
from warcio.archiveiterator import ArchiveIterator

from kiln.acquire.crawl import STATE_FILE, CrawlConfig

# Fast settings: no politeness delay unless it is under test, short timeouts and backoff.
FAST = dict(
    delay=0.0,
    timeout=0.3,
    backoff=0.05,
    retries=2,
    max_redirects=5,
    max_page_mb=1.0,
    quiet=True,
)
SUBPROCESS_TIMEOUT = 60  # a guard against a hung `kiln crawl` process, far above the few seconds it takes


@dataclass
class Record:
    """One WARC response record, read back with warcio."""

    uri: str
    status: str
    warc: dict[str, str]
    http: dict[str, str]  # names lower-cased (HTTP header names are case-insensitive)
    body: bytes


def warc_records(out_dir: Path) -> list[Record]:
    """Every record of every crawl-*.warc.gz in `out_dir`, in file order (raises if a file is unreadable)."""
    records = []
    for path in sorted(out_dir.glob("crawl-*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                assert rec.rec_type == "response"
                records.append(
                    Record(
                        rec.rec_headers.get_header("WARC-Target-URI"),
                        rec.http_headers.get_statuscode(),
                        dict(rec.rec_headers.headers),
                        {k.lower(): v for k, v in rec.http_headers.headers},
                        rec.content_stream().read(),
                    )
                )
    return records


def uris(out_dir: Path) -> list[str]:
    """The WARC-Target-URI of every record, in file order (duplicates kept)."""
    return [r.uri for r in warc_records(out_dir)]


def config(server: SiteServer, out_dir: Path, seed: str = "/", **overrides: object) -> CrawlConfig:
    """A FAST crawl config seeded at `seed` on `server`."""
    return CrawlConfig(seeds=[server.url(seed)], out_dir=str(out_dir), **{**FAST, **overrides})  # type: ignore[arg-type]


def state_rows(out_dir: Path) -> dict[str, tuple[str, str | None]]:
    """url -> (status, reason) from the crawl's SQLite state."""
    db = sqlite3.connect(out_dir / STATE_FILE)
    try:
        return {u: (s, r) for u, s, r in db.execute("SELECT url, status, reason FROM urls")}
    finally:
        db.close()


def committed_offset(out_dir: Path) -> tuple[str, int]:
    """The (WARC file, offset) the crawl state says everything before is accounted for."""
    db = sqlite3.connect(out_dir / STATE_FILE)
    try:
        name, offset = json.loads(db.execute("SELECT value FROM meta WHERE key = 'warc'").fetchone()[0])
        return name, offset
    finally:
        db.close()


def page_paths(requests: list[Request]) -> list[str]:
    """Request paths other than robots.txt (which every run fetches once)."""
    return [r.path for r in requests if r.path != "/robots.txt"]
