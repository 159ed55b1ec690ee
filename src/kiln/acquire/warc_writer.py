"""Writing WARC files, rotated by size: what `kiln crawl` and `kiln ingest` leave for `kiln clean`.

WARC (ISO 28500) is the format Common Crawl, the Internet Archive and every web-data tool read, so kiln's
own crawls are interchangeable with theirs. Records are written with warcio, one gzip member per record
(the standard `.warc.gz` layout: a reader can seek to any record), and each record is flushed and fsynced
before `write` returns its end offset: a caller that records that offset elsewhere (the crawler's SQLite
state) knows everything up to it is on disk. `truncate_to` cuts a file back to such an offset after a crash.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def warc_date(when: datetime | None = None) -> str:
    """WARC-Date in the standard's form, UTC with seconds precision (e.g. 2026-11-23T14:05:09Z)."""
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RotatingWarcWriter:
    """Append records to `<dir>/<prefix>-NNNNN.warc.gz`, starting a new file once one passes `max_bytes`."""

    def __init__(self, directory: str | Path, prefix: str = "kiln", max_bytes: int = 100 << 20) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_bytes = max_bytes
        existing = sorted(self.directory.glob(f"{prefix}-*.warc.gz"))
        self.index = int(existing[-1].name[len(prefix) + 1 : -8]) if existing else 0
        self._file: io.BufferedWriter | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"{self.prefix}-{self.index:05d}.warc.gz"

    def _open(self) -> io.BufferedWriter:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across records, closed in close()
        elif self._file.tell() >= self.max_bytes:
            self._file.close()
            self.index += 1
            self._file = open(self.path, "ab")  # noqa: SIM115
        return self._file

    def write_response(
        self,
        url: str,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes,
        extra: dict[str, str] | None = None,
        date: str | None = None,
        record_type: str = "response",
    ) -> tuple[str, int]:
        """Write one HTTP response record (status line + headers + body). Returns (file name, end offset)."""
        f = self._open()
        http = StatusAndHeaders(f"{status} {reason}".strip(), headers, protocol="HTTP/1.1")
        warc_headers = {"WARC-Date": date or warc_date(), **(extra or {})}
        writer = WARCWriter(f, gzip=True)
        record = writer.create_warc_record(
            url,
            record_type,
            payload=io.BytesIO(body),
            length=len(body),
            http_headers=http,
            warc_headers_dict=warc_headers,
        )
        writer.write_record(record)
        return self._sync(f)

    def write_record(self, record: Any) -> tuple[str, int]:
        """Write an already-built warcio record (ingest copies records through unchanged)."""
        f = self._open()
        WARCWriter(f, gzip=True).write_record(record)
        return self._sync(f)

    def _sync(self, f: io.BufferedWriter) -> tuple[str, int]:
        f.flush()
        os.fsync(f.fileno())
        return self.path.name, f.tell()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RotatingWarcWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_to(path: str | Path, offset: int) -> None:
    """Cut a WARC file back to `offset` (the end of its last committed record), dropping a torn tail."""
    path = Path(path)
    if path.exists() and path.stat().st_size > offset:
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
