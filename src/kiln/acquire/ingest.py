"""`kiln ingest`: copy the chosen records of WARC/WET/WAT/ARC files into kiln's own rotating WARC files.

Reading (and all the robustness against broken archives) is `kiln.acquire.warc.iter_records`; this module only
writes what it keeps: HTTP responses rewritten with their decoded body, other records copied as they are,
each with `WARC-Kiln-Source` naming its file, and `ingest-stats.json` at the end. `run(IngestConfig)` is the
stage (`kiln ingest`); it also leaves the resolved config, `kiln-ingest.toml`, beside the output.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from http import HTTPStatus
from pathlib import Path

from kiln.acquire.http_payload import header
from kiln.acquire.ingest_config import IngestConfig
from kiln.acquire.ingest_summary import STATS_FILE, IngestSummary
from kiln.acquire.warc import IngestStats, WarcRecord, check_types, expand_inputs, iter_records
from kiln.acquire.warc_writer import RotatingWarcWriter, warc_date
from kiln.stage import write_resolved_config

__all__ = ["IngestConfig", "IngestSummary", "ingest", "run"]

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


def run(config: IngestConfig) -> IngestSummary:
    """`kiln ingest`: copy the kept records of `config.inputs` into `<out_dir>/ingest-NNNNN.warc.gz`. The config
    and the inputs are checked before anything is written; the summary is also `<out_dir>/ingest-stats.json`."""
    config.validate()
    files = expand_inputs(config.inputs)
    write_resolved_config(config, config.out_dir, "ingest")
    stats = copy_records(
        files, config.out_dir, config.record_types(), config.content_types(), int(config.warc_mb * (1 << 20))
    )
    summary = IngestSummary.from_stats(stats, files, config.out_dir, config.quiet)
    summary.write(Path(config.out_dir) / STATS_FILE)
    return summary


def ingest(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    record_types: Sequence[str] | None = ("response",),
    content_types: Sequence[str] | None = ("text/html",),
    max_file_bytes: int = 100 << 20,
) -> IngestStats:
    """Copy the kept records of `paths` into `out_dir/ingest-NNNNN.warc.gz` (rotated) for `kiln clean`, ending with
    `ingest-stats.json`; the entry point from before the stage contract (`run` takes an `IngestConfig`)."""
    files = expand_inputs(paths)
    check_types(record_types)
    stats = copy_records(files, out_dir, record_types, content_types, max_file_bytes)
    IngestSummary.from_stats(stats, files, out_dir, quiet=False).write(Path(out_dir) / STATS_FILE)
    return stats


def copy_records(
    files: list[Path],
    out_dir: str | Path,
    record_types: Sequence[str] | None,
    content_types: Sequence[str] | None,
    max_file_bytes: int,
) -> IngestStats:
    """Write the kept records of `files` into `out_dir/ingest-NNNNN.warc.gz` (rotated at `max_file_bytes`).

    HTTP responses are rewritten with their decoded body (see `kiln.acquire.http_payload`) and a `WARC-Kiln-Source`
    header naming the file they came from; other records are copied as they are.
    """
    stats = IngestStats()
    with RotatingWarcWriter(Path(out_dir), prefix="ingest", max_bytes=max_file_bytes) as writer:
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
    return stats
