"""Documents in and out of the cleaning pipeline: WARC/HTML, JSONL and Parquet readers, a Parquet writer.

Parquet is the hand-off format between `kiln clean` and `kiln tokenize` (and what datatrove and FineWeb
publish): columns `id`, `url`, `text`, then metadata columns (`language`, `language_score`, ...) that every
row has; per-document extras that vary go in a JSON `metadata` column. Files are written to a temporary
name and renamed, so a reader never sees half a shard.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kiln.clean.pipeline import Document

FIXED_COLUMNS = ("id", "url", "text")
TYPED_METADATA = {"language": "string", "language_score": "float64", "date": "string", "source": "string"}


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
    """`{"text": ..., "id"?, "url"?, ...}` per line; other keys become metadata."""
    name = Path(path).name
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                continue
            text = rec.pop("text")
            doc_id = str(rec.pop("id", f"{name}:{lineno}"))
            url = str(rec.pop("url", ""))
            yield Document(id=doc_id, text=text, url=url, metadata={"source": name, **rec})


def read_parquet_documents(path: str | Path) -> Iterator[Document]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches():
        for row in batch.to_pylist():
            extra = json.loads(row.pop("metadata") or "{}") if "metadata" in row else {}
            yield Document(
                id=str(row.pop("id", "")), url=str(row.pop("url", "") or ""), text=row.pop("text", "") or "",
                metadata={**extra, **{k: v for k, v in row.items() if v is not None}},
            )  # fmt: skip


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
