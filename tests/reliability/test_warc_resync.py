"""One wrong Content-Length must not lose the rest of a WARC: a record whose declared length runs past the end of
the file used to end reading there (27 of 50 records kept, reported as "2 skipped"). Now that record alone is
counted as malformed and reading resumes at the next record after its header, plain and gzipped alike."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from kiln.acquire.warc import IngestStats, iter_records

N = 50


def _members(data: bytes) -> list[bytes]:
    """The decompressed gzip members of a per-record gzipped WARC."""
    out, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        out.append(d.decompress(data[pos:]))
        pos = len(data) - len(d.unused_data)
    return out


def _warc(gz: bool, bad: int) -> bytes:
    """N HTML responses; record `bad` declares a Content-Length far past the end of the file."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for i in range(N):
        body = f"<html><body><p>page {i}</p>{'x' * (50 + i)}</body></html>".encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(
                f"http://example.com/{i}", "response", payload=io.BytesIO(body), http_headers=http
            )
        )
    records = _members(buf.getvalue()) if gz else [b"WARC/1." + r for r in buf.getvalue().split(b"WARC/1.")[1:]]
    records[bad] = re.sub(rb"Content-Length: \d+", b"Content-Length: 99999999", records[bad], count=1)
    return b"".join(gzip.compress(r) for r in records) if gz else b"".join(records)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("bad", [0, 10, N - 2])
def test_a_length_past_the_end_loses_only_its_own_record(tmp_path: Path, gz: bool, bad: int) -> None:
    path = tmp_path / ("x.warc.gz" if gz else "x.warc")
    path.write_bytes(_warc(gz, bad))
    stats = IngestStats()
    urls = [r.url for r in iter_records(path, stats)]
    assert urls == [f"http://example.com/{i}" for i in range(N) if i != bad]
    assert stats.skipped_malformed == 1 and "truncated" in stats.problems[0], stats.problems


def test_a_really_truncated_last_record_is_still_counted_once(tmp_path: Path) -> None:
    data = _warc(False, bad=N - 1)
    path = tmp_path / "cut.warc"
    path.write_bytes(data[: len(data) - 20])
    stats = IngestStats()
    assert len(list(iter_records(path, stats))) == N - 1
    assert stats.skipped_malformed == 1
