"""`kiln ingest`: copy the chosen records of WARC/WET/WAT/ARC files into kiln's own rotating WARC files.

Reading (and all the robustness against broken archives) is `kiln.acquire.warc.iter_records`; this module only
writes what it keeps: HTTP responses rewritten with their decoded body, other records copied as they are,
each with `WARC-Kiln-Source` naming its file, and `ingest-stats.json` at the end.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from http import HTTPStatus
from pathlib import Path

from kiln.acquire.http_payload import header
from kiln.acquire.warc import IngestStats, WarcRecord, check_types, expand_inputs, iter_records
from kiln.acquire.warc_writer import RotatingWarcWriter, warc_date
from kiln.utils.io import atomic_write_text

_WARC_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def _valid_warc_date(date: str) -> bool:
    if not _WARC_DATE.match(date):
        return False
    try:
        datetime.fromisoformat(date.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_STRUCTURAL = {"warc-type", "content-length", "content-type", "warc-block-digest", "warc-payload-digest"}


def _dated(record: WarcRecord, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The WARC-Date to write: the original when valid; else now, with the original kept beside it."""
    if _valid_warc_date(record.date):
        return record.date, headers
    return warc_date(), {**headers, "WARC-Kiln-Original-Date": record.date}


def write_other(writer: RotatingWarcWriter, record: WarcRecord) -> tuple[str, int]:
    """Copy a non-response record (WET conversion, WAT metadata, request, ...) with its block unchanged.

    Its WARC headers are kept except the ones warcio recomputes (type, length, digests); the record is
    built with warcio and written through the writer's public `write_record`, which rotates and fsyncs.
    """
    from warcio.recordbuilder import RecordBuilder

    # The URI is passed on its own (warcio writes it only when there is one), the date after checking it.
    skip = _STRUCTURAL | {"warc-target-uri", "warc-date"}
    keep = {k: v for k, v in record.warc_headers.items() if k.lower() not in skip}
    keep["WARC-Kiln-Source"] = Path(record.source).name
    date, keep = _dated(record, keep)
    keep["WARC-Date"] = date
    content_type = header(list(record.warc_headers.items()), "content-type") or "application/octet-stream"
    built = RecordBuilder().create_warc_record(
        record.url,
        record.record_type,
        payload=io.BytesIO(record.body),
        length=len(record.body),
        warc_content_type=content_type,
        warc_headers_dict=keep,
    )
    return writer.write_record(built)


def ingest(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    record_types: Sequence[str] | None = ("response",),
    content_types: Sequence[str] | None = ("text/html",),
    max_file_bytes: int = 100 << 20,
) -> IngestStats:
    """Copy the kept records of `paths` into `out_dir/ingest-NNNNN.warc.gz` (rotated) for `kiln clean`.

    HTTP responses are rewritten with their decoded body (see `kiln.acquire.http_payload`) and a `WARC-Kiln-Source`
    header naming the file they came from; other records are copied as they are. Ends by writing
    `ingest-stats.json` (atomically) beside them.
    """
    files = expand_inputs(paths)
    check_types(record_types)
    stats = IngestStats()
    out = Path(out_dir)
    with RotatingWarcWriter(out, prefix="ingest", max_bytes=max_file_bytes) as writer:
        for path in files:
            for record in iter_records(path, stats, record_types, content_types):
                if record.record_type == "response" and record.http_status is not None:
                    date, extra = _dated(record, {"WARC-Kiln-Source": Path(record.source).name})
                    try:
                        reason = HTTPStatus(record.http_status).phrase
                    except ValueError:
                        reason = ""
                    writer.write_response(
                        record.url, record.http_status, reason, record.http_headers or [], record.body, extra, date
                    )
                else:
                    write_other(writer, record)
    outputs = sorted(p.name for p in out.glob("ingest-*.warc.gz"))
    summary = {**stats.to_dict(), "inputs": [str(p) for p in files], "outputs": outputs}
    atomic_write_text(out / "ingest-stats.json", json.dumps(summary, indent=2) + "\n")
    return stats
