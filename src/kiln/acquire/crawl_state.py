"""The crawler's memory in SQLite: frontier, visited set, counters and the last committed WARC offset.

Every URL ever seen is one row (the primary key is the normalised URL, so "seen" is an index lookup and a
re-discovered URL is ignored). A page's outcome, the links it adds and the WARC offset after its record are
committed in one transaction *after* the record is on disk; on restart `kiln crawl` compares the WARC files
with the committed offset and re-reads any record written after it (see crawl.py), so a `kill -9` at any
moment loses nothing and fetches nothing twice. WAL mode keeps commits cheap (no fsync of the whole file).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    depth INTEGER NOT NULL,
    parent TEXT,
    hops INTEGER NOT NULL DEFAULT 0,      -- redirects followed to reach this URL
    status TEXT NOT NULL DEFAULT 'queued', -- queued | done | skipped | failed | redirect
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS urls_queue ON urls (status, depth, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CrawlState:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    # ---------------------------------------------------------------------------------------------- meta

    def get(self, key: str, default: object = None) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _set(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # ---------------------------------------------------------------------------------------------- frontier

    def add(self, rows: Iterable[tuple[str, str, int, str | None, int]]) -> int:
        """Queue (url, host, depth, parent, hops) rows not seen before; returns how many were new."""
        before = self.db.total_changes
        self.db.executemany(
            "INSERT OR IGNORE INTO urls (url, host, depth, parent, hops) VALUES (?, ?, ?, ?, ?)", list(rows)
        )
        return self.db.total_changes - before

    def queued(
        self, limit: int, exclude_hosts: set[str], exclude_urls: set[str]
    ) -> list[tuple[str, str, int, str | None, int, int]]:
        """Up to `limit` due URLs, shallowest first, not on busy hosts and not already in flight."""
        hosts, urls = sorted(exclude_hosts), sorted(exclude_urls)
        sql = "SELECT url, host, depth, parent, hops, attempts FROM urls WHERE status = 'queued' AND not_before <= ?"
        if hosts:
            sql += f" AND host NOT IN ({','.join('?' * len(hosts))})"
        if urls:
            sql += f" AND url NOT IN ({','.join('?' * len(urls))})"
        sql += " ORDER BY depth, seq LIMIT ?"
        return self.db.execute(sql, (time.time(), *hosts, *urls, limit)).fetchall()

    def pending(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM urls WHERE status = 'queued'").fetchone()[0]

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(not_before) FROM urls WHERE status = 'queued'").fetchone()
        return row[0]

    def status_of(self, url: str) -> str | None:
        row = self.db.execute("SELECT status FROM urls WHERE url = ?", (url,)).fetchone()
        return row[0] if row else None

    # ---------------------------------------------------------------------------------------------- outcomes

    def finish(
        self,
        url: str,
        status: str,
        reason: str | None = None,
        links: Iterable[tuple[str, str, int, str | None, int]] = (),
        warc: tuple[str, int] | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        """One page's outcome, its new links, the WARC offset after its record and counters: one commit."""
        self.db.execute("BEGIN")
        try:
            self.db.execute("UPDATE urls SET status = ?, reason = ? WHERE url = ?", (status, reason, url))
            self.add(links)
            if warc is not None:
                self._set("warc", list(warc))
            for key, delta in (counters or {}).items():
                self._set(f"count:{key}", int(self.get(f"count:{key}", 0)) + delta)  # type: ignore[arg-type]
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def commit_warc(self, warc: tuple[str, int]) -> None:
        """Record that everything in the WARC files up to this (file, offset) is accounted for."""
        self._set("warc", list(warc))

    def retry_later(self, url: str, delay: float, reason: str) -> None:
        self.db.execute(
            "UPDATE urls SET attempts = attempts + 1, not_before = ?, reason = ? WHERE url = ?",
            (time.time() + delay, reason, url),
        )

    def counters(self) -> dict[str, int]:
        rows = self.db.execute("SELECT key, value FROM meta WHERE key LIKE 'count:%'").fetchall()
        return {k[6:]: int(json.loads(v)) for k, v in rows}

    def status_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM urls GROUP BY status").fetchall())

    def reasons(self, status: str) -> dict[str, int]:
        rows = self.db.execute("SELECT reason, COUNT(*) FROM urls WHERE status = ? GROUP BY reason", (status,))
        return {str(r): n for r, n in rows.fetchall()}

    def close(self) -> None:
        self.db.close()
