"""A kept document's extraction source: the WARC record `kiln clean` extracted its text from, when the WARC is at hand.

What links them is what clean writes: the document's `id` is the record's WARC-Record-ID and its `source` metadata
the WARC's file name; the run's stats.json lists the input paths. So the record is found by reading the input of
that name (as stats.json gives it, or beside the output) until the record with that id. Only inputs the run itself
read are opened, and only the matching HTML record is returned, never another file. Clean does not record the
record's byte offset, so the lookup reads the WARC from its start, bounded by MAX_RECORDS (a gap to close by
adding the offset to the documents' metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_RECORDS = 50_000  # records read looking for one, at most
MAX_BODY_BYTES = 1 << 20  # of the record's payload returned


def candidate_warcs(output: Path, inputs: list[Any], source: str) -> list[Path]:
    """Input paths of the run named `source` that exist: as stats.json has them, else beside the output."""
    found = []
    for entry in inputs:
        raw = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(raw, str) or Path(raw).name != source:
            continue
        for path in (Path(raw), output.parent / source, output / source):
            if path.is_file() and path not in found:
                found.append(path)
    return found


def find_record(warcs: list[Path], record_id: str) -> dict[str, Any] | None:
    """The HTML response record with this WARC-Record-ID in the first WARC that holds it, or None."""
    from kiln.acquire.warc import IngestStats, iter_records

    for warc in warcs:
        stats = IngestStats()
        for n, rec in enumerate(iter_records(warc, stats, record_types=("response",))):
            if n >= MAX_RECORDS:
                break
            if rec.record_id == record_id:
                body = rec.body[:MAX_BODY_BYTES]
                return {
                    "warc": warc.name,
                    "url": rec.url,
                    "date": rec.date,
                    "content_type": rec.content_type,
                    "offset": rec.offset,
                    "bytes": len(rec.body),
                    "truncated": len(rec.body) > MAX_BODY_BYTES,
                    "html": body.decode("utf-8", errors="replace"),
                }
    return None
