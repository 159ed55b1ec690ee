"""Reading WARC, WET, WAT and ARC files into plain records: the first step of `kiln ingest` (`kiln.acquire.ingest`)
and of `kiln clean`'s WARC input.

Why FastWARC: it is the reader of resiliparse (the ChatNoir / OpenWebSearch.eu toolkit), written in C++,
and reads gzipped WARC several times faster than warcio, which matters when a crawl is terabytes. It does
not read the old ARC format (it raises "Invalid WARC header" on `filedesc://`), so ARC files, recognised by
their first bytes rather than their name, are read with warcio's `ArchiveIterator(arc2warc=True)`, which
turns each ARC record into the WARC record it would have been.

Robustness is the point of this module: real archives contain torn gzip members, wrong Content-Lengths,
garbage between records and headers that break the standard (see `clueweb09-ja-quirk.warc.gz`: WARC/0.18,
dates like `2008-10-294T05:21:46-0700`, HTTP headers ending in a bare LF). One bad record must never end a
run, so:

- FastWARC runs in strict mode, where it *raises* at a broken record boundary instead of silently skipping
  (its quirks mode resynchronises, but quietly, and loses the record after the garbage). On an error the
  reader scans the file for the next plausible record start (a gzip member header in `.gz` files, a line
  beginning `WARC/` in plain ones) and restarts there; each bad stretch is counted once in
  `IngestStats.skipped_malformed`, with the file and offset in `problems`.
- A record is only handed on once the reader has found a valid record boundary after it. If it is followed
  by junk instead, its length may be wrong (a too-short Content-Length leaves the rest of its body behind,
  a too-long one swallows the next record), so it is kept only if its WARC-Block-Digest verifies.
- HTTP headers are parsed per record in FastWARC's quirks mode: strict parsing reads LF-only headers
  *wrongly* (the status line becomes half the page) without any error.
- A record shorter than its Content-Length (a truncated file, or a Content-Length that is simply wrong and
  runs past the end) is counted, never passed on, and reading resumes at the next record start after its
  header: a wrong length must not take the records after it down with it.

Response bodies are handed on decoded (`kiln.acquire.http_payload`), because the next stage wants the page,
not the wire bytes.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fastwarc.warc import ArchiveIterator as FastArchiveIterator

from kiln.acquire.http_payload import MalformedRecord as _Malformed
from kiln.acquire.http_payload import decode_payload, header

RECORD_TYPES = ("warcinfo", "response", "resource", "request", "metadata", "revisit", "conversion", "continuation")
ARCHIVE_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz", ".wat", ".wat.gz")
MAX_PROBLEMS = 5
_SCAN_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass
class WarcRecord:
    """One record, format-independent. `body` is the decoded HTTP payload for HTTP responses, else the block."""

    record_type: str
    url: str
    date: str  # WARC-Date exactly as in the file (old files break the standard: keep what they say)
    record_id: str
    warc_headers: dict[str, str]
    http_status: int | None
    http_headers: list[tuple[str, str]] | None  # describe `body` (encodings undone are renamed X-Crawler-*)
    content_type: str  # the HTTP Content-Type of responses, else the WARC Content-Type
    body: bytes
    source: str
    offset: int | None  # byte offset of the record in the file (of its gzip member), for going back to it;
    # meaningless for the rare file gzipped as one stream rather than one member per record


@dataclass
class IngestStats:
    """Counts over a run; `problems` keeps the first few messages, each naming the file and offset."""

    files: int = 0
    records: int = 0  # records read, of every type, before filtering
    kept: int = 0
    skipped_malformed: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, other: IngestStats) -> IngestStats:
        """Fold another run's counts into this one (e.g. per-file stats from parallel workers)."""
        self.files += other.files
        self.records += other.records
        self.kept += other.kept
        self.skipped_malformed += other.skipped_malformed
        self.by_type.update(other.by_type)
        self.problems.extend(other.problems[: max(0, MAX_PROBLEMS - len(self.problems))])
        return self

    def malformed(self, source: str | Path, offset: int | None, why: str) -> None:
        self.skipped_malformed += 1
        if len(self.problems) < MAX_PROBLEMS:
            where = f" at offset {offset}" if offset is not None else ""
            self.problems.append(f"{source}{where}: {why}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "kept": self.kept,
            "skipped_malformed": self.skipped_malformed,
            "by_type": dict(self.by_type.most_common()),
            "problems": list(self.problems),
        }


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories as their archive files (sorted). A missing path is a FileNotFoundError
    before anything is read, so a typo does not leave half an output behind."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(ARCHIVE_SUFFIXES))
            if not found:
                raise ValueError(f"no WARC/ARC files ({', '.join(ARCHIVE_SUFFIXES)}) in directory {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file: {p}")
    return files


def iter_records(
    path: str | Path,
    stats: IngestStats,
    record_types: Sequence[str] | None = ("response",),
    content_types: Sequence[str] | None = None,
) -> Iterator[WarcRecord]:
    """The records of one WARC/WET/WAT/ARC file (gzipped or plain), filtered; bad data is counted in `stats`.

    `record_types`: WARC-Type names to keep (None: all). `content_types`: prefixes of the content type that
    response records must have (e.g. ["text/html"]; None: all). Other record types are chosen by type alone,
    since their WARC Content-Type names the record format (WET: text/plain, WAT: application/json), not a
    page. Never raises for bad data; a missing file is a FileNotFoundError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    types = check_types(record_types)
    prefixes = None if content_types is None else tuple(c.strip().lower() for c in content_types)
    stats.files += 1
    kind, why = _sniff(path)
    if kind == "empty":
        return
    # A file that does not begin like an archive may still hold records after a corrupt start (a bad
    # first gzip member): the WARC reader counts the start as one bad stretch and looks for the next record.
    reader = _iter_arc if kind == "arc" else _iter_warc
    for record in reader(path, stats, types, prefixes, why):
        stats.kept += 1
        yield record


def check_types(record_types: Sequence[str] | None) -> frozenset[str] | None:
    if record_types is None:
        return None
    if isinstance(record_types, str):
        record_types = [record_types]
    types = frozenset(t.strip().lower() for t in record_types)
    unknown = sorted(types - set(RECORD_TYPES))
    if unknown:
        raise ValueError(f"unknown WARC record type(s) {unknown}; choose from {', '.join(RECORD_TYPES)}")
    return types


def _sniff(path: Path) -> tuple[str, str | None]:
    """('warc' | 'arc' | 'empty' | 'unknown', what is wrong if unknown), by the first bytes (decompressed
    if gzip), not by the name: names lie."""
    with open(path, "rb") as f:
        raw = f.read(1 << 16)
    if not raw:
        return "empty", None
    head = raw
    if raw.startswith(b"\x1f\x8b"):
        try:
            head = zlib.decompressobj(wbits=31).decompress(raw, 64)
        except zlib.error as e:
            return "unknown", f"corrupt gzip data at the start ({e})"
    head = head.lstrip(b"\r\n")
    if head.startswith(b"WARC/"):
        return "warc", None
    if head.startswith(b"filedesc://"):
        return "arc", None
    return "unknown", f"not a WARC or ARC file (it begins {head[:24]!r})"


def _iter_warc(
    path: Path,
    stats: IngestStats,
    types: frozenset[str] | None,
    prefixes: tuple[str, ...] | None,
    first_problem: str | None = None,
) -> Iterator[WarcRecord]:
    """FastWARC in strict mode, restarted past every broken stretch (see the module docstring)."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
        start = 0
        bad_stretch = False  # inside a run of failed restarts: the stretch was counted once already
        while True:
            f.seek(start)
            pending: WarcRecord | None = None  # read, but not yet known to end on a record boundary
            last_offset = start
            error: str | None = None
            current_counted = False
            truncated_at: int | None = None  # a record whose body ran past the end of the data it could read
            read_any = False
            try:
                for rec in FastArchiveIterator(f, parse_http=False, verify_digests=False):
                    # A new record header parsed: whatever came before ended on a valid boundary.
                    if pending is not None:
                        yield pending
                        pending = None
                    bad_stretch = False
                    read_any = True
                    offset = last_offset = rec.stream_pos
                    current_counted = False
                    rtype = (rec.headers.get("WARC-Type") or "unknown").lower()
                    stats.records += 1
                    stats.by_type[rtype] += 1
                    try:
                        pending = _from_fastwarc(rec, rtype, str(path), offset, types, prefixes)
                    except _Malformed as e:
                        current_counted = True
                        stats.malformed(path, offset, str(e))
                        if "truncated" in str(e):
                            truncated_at = offset
            except OSError as e:  # FastWARC's error for a broken header, boundary or gzip stream
                error = str(e) or type(e).__name__
            if error is None and truncated_at is not None and truncated_at == last_offset:
                # A Content-Length past the end swallowed everything after it: the records it swallowed are
                # still there, so look for the next record start after its header and read on from there.
                nxt = _next_sync_point(f, truncated_at + 1, gz)
                if nxt is not None:
                    bad_stretch, start = True, nxt
                    continue
            if error is None:
                if not read_any:  # ended quietly without a record: e.g. a gzip header cut short
                    if not bad_stretch:
                        stats.malformed(path, start, first_problem or "no WARC record where one should begin")
                    return
                # FastWARC ends quietly on a gzip member cut short (torn file): check the end of the file.
                complete, trailing = _gzip_tail(f, last_offset) if gz else (True, False)
                if not complete and (pending is not None or not current_counted):
                    stats.malformed(path, last_offset, "record cut short: its gzip member is incomplete")
                elif pending is not None:
                    yield pending
                if trailing:
                    stats.malformed(path, last_offset, "data after the last record is not a record (a torn one?)")
                return
            if pending is not None:
                # Followed by junk: its Content-Length may be wrong. Trust it only if its digest agrees.
                if _digest_ok(f, pending.offset or 0):
                    yield pending
                    if not bad_stretch:
                        stats.malformed(path, last_offset, f"bad data after this record ({error})")
                else:
                    stats.malformed(path, last_offset, f"record not followed by a record boundary ({error})")
                pending = None
            elif not bad_stretch and not current_counted:
                if first_problem and start == 0 and not read_any:
                    stats.malformed(path, 0, first_problem)
                else:
                    stats.malformed(path, last_offset, f"unreadable data after this point ({error})")
            bad_stretch = True
            nxt = _next_sync_point(f, last_offset + 1, gz)
            if nxt is None:
                return
            start = nxt


def _from_fastwarc(
    rec: Any, rtype: str, source: str, offset: int, types: frozenset[str] | None, prefixes: tuple[str, ...] | None
) -> WarcRecord | None:
    """A kept WarcRecord, or None when filtered out. Reads (or skips) the whole block: raises _Malformed."""
    headers = rec.headers
    declared = headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        raise _Malformed(f"{rtype} record without a valid Content-Length (torn header?)")
    wanted = types is None or rtype in types
    http = wanted and rtype == "response" and rec.is_http
    if not wanted:
        if rec.reader.consume() < int(declared):
            raise _Malformed(f"{rtype} record shorter than its Content-Length {declared} (truncated)")
        return None
    status: int | None = None
    http_headers: list[tuple[str, str]] | None = None
    content_type = headers.get("Content-Type") or ""
    if http:
        rec.parse_http(quirks_mode=True)  # quirks: LF-only headers (old crawlers) parse right, not silently wrong
        status = rec.http_headers.status_code
        if status is None:
            raise _Malformed(f"response without a valid HTTP status line: {rec.http_headers.status_line!r:.80}")
        http_headers = list(rec.http_headers.to_tuples())
        content_type = header(http_headers, "content-type") or ""
        expected = rec.content_length  # after parse_http: the payload length the header promised
    else:
        expected = int(declared)
    if rtype == "response" and prefixes is not None and not content_type.lower().startswith(prefixes):
        if rec.reader.consume() < expected:  # filtered out, but a torn record is still counted
            raise _Malformed(f"{rtype} record truncated (filtered out by content type anyway)")
        return None
    body = rec.reader.read()
    if len(body) < expected:
        raise _Malformed(f"{rtype} record truncated: {len(body)} of {expected} bytes")
    return _record(rtype, dict(headers.to_tuples()), status, http_headers, content_type, body, source, offset)


def _digest_ok(f: BinaryIO, offset: int) -> bool:
    """Re-read the record at `offset` alone and check its WARC-Block-Digest (False when it has none)."""
    here = f.tell()
    try:
        f.seek(offset)
        rec = next(iter(FastArchiveIterator(f, parse_http=False, verify_digests=False)), None)
        return rec is not None and bool(rec.headers.get("WARC-Block-Digest")) and rec.verify_block_digest()
    except OSError:
        return False
    finally:
        f.seek(here)


def _gzip_tail(f: BinaryIO, start: int) -> tuple[bool, bool]:
    """(whether the gzip member at `start` is complete, whether anything but zero padding follows it).

    Only for files of one gzip member per record (the standard layout); elsewhere `start` is no member
    start and the answer is (True, False).
    """
    f.seek(start)
    if f.read(3) != _GZIP_MAGIC:
        return True, False
    f.seek(start)
    d = zlib.decompressobj(wbits=31)
    try:
        while not d.eof:
            chunk = f.read(1 << 16)
            if not chunk:
                return False, False
            while chunk and not d.eof:
                d.decompress(chunk, 1 << 20)  # output discarded, in bounded pieces
                chunk = d.unconsumed_tail
    except zlib.error:
        return False, False
    rest = (d.unused_data + f.read(64)).strip(b"\x00")
    return True, bool(rest)


def _next_sync_point(f: BinaryIO, after: int, gz: bool) -> int | None:
    """The first offset >= `after` where a record could start: a gzip member header in a .gz file, else
    `WARC/<digit>` (anywhere: garbage need not end in a newline). A false hit fails to parse and the scan
    moves past it, so this only has to be cheap and never skip a real start."""
    pattern = _GZIP_MAGIC if gz else re.compile(rb"WARC/\d")
    pos = after
    while True:
        f.seek(pos)
        chunk = f.read(_SCAN_CHUNK)
        if not chunk:
            return None
        i = chunk.find(pattern) if isinstance(pattern, bytes) else (m.start() if (m := pattern.search(chunk)) else -1)
        if i >= 0:
            return pos + i
        if len(chunk) < _SCAN_CHUNK:
            return None
        pos += len(chunk) - 5  # a start split across chunks is found in the next one


def _iter_arc(
    path: Path,
    stats: IngestStats,
    types: frozenset[str] | None,
    prefixes: tuple[str, ...] | None,
    first_problem: str | None = None,
) -> Iterator[WarcRecord]:
    """ARC through warcio (arc2warc). warcio cannot resynchronise, so an error ends this file, counted.
    (`first_problem` is only for the WARC reader's signature: an ARC file was recognised by a sound start.)"""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        it = ArchiveIterator(f, arc2warc=True)
        offset: int | None = 0
        try:
            for rec in it:
                rtype = rec.rec_type
                stats.records += 1
                stats.by_type[rtype] += 1
                try:
                    # get_record_offset() reads the record to its end: ask only once the body has been read.
                    record = _from_warcio(rec, rtype, str(path), prefixes) if types is None or rtype in types else None
                except _Malformed as e:
                    stats.malformed(path, it.get_record_offset(), str(e))
                    continue
                offset = it.get_record_offset()
                if record is not None:
                    record.offset = offset
                    yield record
        except Exception as e:  # warcio raises many kinds (ArchiveLoadFailed, ValueError, zlib.error)
            stats.malformed(path, offset, f"cannot read past this record ({type(e).__name__}: {str(e)[:120]})")


def _from_warcio(rec: Any, rtype: str, source: str, prefixes: tuple[str, ...] | None) -> WarcRecord | None:
    """A kept WarcRecord (offset filled in by the caller), or None when its content type is filtered out."""
    headers = rec.rec_headers
    status: int | None = None
    http_headers: list[tuple[str, str]] | None = None
    content_type = headers.get_header("Content-Type") or ""
    if rtype == "response" and rec.http_headers is not None:
        status = int(rec.http_headers.get_statuscode() or 0) or None
        http_headers = list(rec.http_headers.headers)
        content_type = header(http_headers, "content-type") or ""
    if rtype == "response" and prefixes is not None and not content_type.lower().startswith(prefixes):
        return None
    body = rec.raw_stream.read()
    if getattr(rec.raw_stream, "limit", 0) > 0:
        raise _Malformed(f"{rtype} record truncated ({len(body)} bytes read)")
    return _record(rtype, dict(headers.headers), status, http_headers, content_type, body, source, None)


def _record(
    rtype: str,
    warc_headers: dict[str, str],
    status: int | None,
    http_headers: list[tuple[str, str]] | None,
    content_type: str,
    body: bytes,
    source: str,
    offset: int | None,
) -> WarcRecord:
    """The WarcRecord both readers return, the HTTP payload decoded (chunked / gzip / br undone)."""
    if http_headers is not None:
        body, http_headers = decode_payload(body, http_headers)
    named = {k.lower(): v for k, v in reversed(list(warc_headers.items()))}  # header names are case-blind
    return WarcRecord(
        record_type=rtype,
        url=_clean_url(named.get("warc-target-uri")),
        date=named.get("warc-date") or "",
        record_id=named.get("warc-record-id") or "",
        warc_headers=warc_headers,
        http_status=status,
        http_headers=http_headers,
        content_type=content_type,
        body=body,
        source=source,
        offset=offset,
    )


def _clean_url(url: str | None) -> str:
    """wget writes `WARC-Target-URI: <https://...>` (an erratum in the WARC 1.1 grammar); drop the brackets."""
    url = (url or "").strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1].strip()
    return url


__all__ = ["IngestStats", "WarcRecord", "check_types", "expand_inputs", "iter_records"]
