"""Documents in and out of the cleaning pipeline: WARC/HTML, JSONL and Parquet readers, a Parquet writer.

A file that cannot be read as what its name says (a gzip that is not one, a Parquet file without a `text`
column of strings, a JSONL file without one usable line) raises `InputError`, a ValueError naming the file;
`kiln clean` records it as that input's problem (see `kiln.clean.runner`) and goes on with the other inputs.

Parquet is the hand-off format between `kiln clean` and `kiln tokenize` (and what datatrove and FineWeb
publish): columns `id`, `url`, `text`, then metadata columns (`language`, `language_score`, ...) that every
row has; per-document extras that vary go in a JSON `metadata` column. Files are written to a temporary
name and renamed, so a reader never sees half a shard.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kiln.clean.pipeline import Document

FIXED_COLUMNS = ("id", "url", "text")
TYPED_METADATA = {"language": "string", "language_score": "float64", "date": "string", "source": "string"}


class InputError(ValueError):
    """An input file that cannot be read as what its name says; the message names the file."""


def read_warc_documents(path: str | Path, stats: Any | None = None) -> Iterator[Document]:
    """HTML response records of a WARC file as documents with `html` set (text comes from extraction)."""
    from kiln.acquire.warc import IngestStats, iter_records

    stats = stats if stats is not None else IngestStats()
    name = Path(path).name
    for rec in iter_records(path, stats, record_types=("response",), content_types=["text/html", "application/xhtml"]):
        m = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", rec.content_type or "", re.IGNORECASE)
        charset = m.group(1) if m else None
        meta: dict[str, Any] = {"date": rec.date, "source": name}
        if charset:
            meta["charset"] = charset
        yield Document(id=rec.record_id or f"{name}:{rec.offset}", url=rec.url, html=rec.body, metadata=meta)


def read_jsonl_documents(path: str | Path) -> Iterator[Document]:
    """`{"text": ..., "id"?, "url"?, ...}` per line; other keys become metadata. `.gz` is read as gzip. Lines that
    are not such objects are skipped; a file with no usable line at all (or that is not the gzip it claims to
    be) is an `InputError`."""
    name = Path(path).name
    kept = bad = 0
    opener = gzip.open if name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                    bad += 1
                    continue
                text = rec.pop("text")
                doc_id = str(rec.pop("id", f"{name}:{lineno}"))
                url = str(rec.pop("url", ""))
                kept += 1
                yield Document(id=doc_id, text=text, url=url, metadata={"source": name, **rec})
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputError(f"{path}: not a readable gzip file ({e or type(e).__name__}) after {kept} documents") from None
    if kept == 0 and bad:
        raise InputError(f'{path}: none of its {bad} lines is a JSON object with a "text" string')


def read_parquet_documents(path: str | Path) -> Iterator[Document]:
    """Rows of a Parquet file with a `text` column of strings; any read error is an `InputError` naming the file
    (and the column, when that is what is wrong)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    if "text" not in schema.names:
        shown = ", ".join(schema.names[:20]) or "none"
        raise InputError(f"{path}: no 'text' column (its columns: {shown})")
    text_type = schema.field("text").type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_null(text_type)):
        raise InputError(f"{path}: column 'text' holds {text_type}, not strings")
    batches = pf.iter_batches()
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{path}: cannot read its rows ({e})") from None
        if batch is None:
            return
        for row in batch.to_pylist():
            extra = _metadata(row.pop("metadata")) if "metadata" in row else {}
            yield Document(
                id=str(row.pop("id", "")), url=str(row.pop("url", "") or ""), text=row.pop("text", "") or "",
                metadata={**extra, **{k: v for k, v in row.items() if v is not None}},
            )  # fmt: skip


def _metadata(value: Any) -> dict[str, Any]:
    """A `metadata` cell: kiln's JSON object, or (someone else's column) kept as it is under that name."""
    if value is None or value == "":
        return {}
    try:
        extra = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        extra = None
    return extra if isinstance(extra, dict) else {"metadata": value}


def read_documents(path: str | Path, stats: Any | None = None) -> Iterator[Document]:
    """Documents from a WARC (.warc/.warc.gz/.arc), JSONL or Parquet file, by its name."""
    name = Path(path).name.lower()
    if name.endswith(".parquet"):
        return read_parquet_documents(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl_documents(path)
    return read_warc_documents(path, stats)


def write_parquet(path: str | Path, docs: Iterable[Document]) -> int:
    """Write documents as a Parquet shard (atomically); returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list[Any]] = {c: [] for c in (*FIXED_COLUMNS, *TYPED_METADATA, "metadata")}
    n = 0
    for doc in docs:
        rows["id"].append(doc.id)
        rows["url"].append(doc.url)
        rows["text"].append(doc.text)
        extra = {k: v for k, v in doc.metadata.items() if k not in TYPED_METADATA}
        for key in TYPED_METADATA:
            rows[key].append(doc.metadata.get(key))
        rows["metadata"].append(json.dumps(extra, ensure_ascii=False, default=str))
        n += 1
    schema = pa.schema(
        [(c, pa.string()) for c in FIXED_COLUMNS]
        + [(k, pa.float64() if t == "float64" else pa.string()) for k, t in TYPED_METADATA.items()]
        + [("metadata", pa.string())]
    )
    table = pa.table(rows, schema=schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n
