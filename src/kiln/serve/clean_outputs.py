"""`kiln clean` outputs under the served data directory, for the Data tab: the funnel (stats.json), the dropped
samples (dropped_samples.json) and the kept documents (the Parquet shards), each read in bounded pieces.

An output is a folder holding `stats.json` with clean's shape (`steps` and `documents_out`). Search reads the
shards' `id`, `url` and `text` columns one shard at a time and stops after MAX_SCAN_ROWS documents, saying so,
so a query over a huge output costs a bounded time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln.serve.found import relative_name, reused_briefly, walk_dirs

STATS_FILE = "stats.json"
SAMPLES_FILE = "dropped_samples.json"
MAX_JSON_BYTES = 64 << 20
MAX_SCAN_ROWS = 200_000  # documents a search looks at, at most
EXCERPT_CHARS = 400  # of each document's text in a listing; the document route gives it whole


class OutputError(ValueError):
    """A clean output whose files cannot be read; the message names the file (relative to the output)."""


def _load_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise OutputError(f"{path.name} is larger than {MAX_JSON_BYTES:,} bytes")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputError(f"{path.name} cannot be read as JSON ({type(e).__name__})") from None


def _is_clean_stats(path: Path) -> bool:
    try:
        data = _load_json(path)
    except OutputError:
        return False
    return isinstance(data, dict) and isinstance(data.get("steps"), list) and "documents_out" in data


@reused_briefly
def find_outputs(root: Path | None) -> dict[str, Path]:
    """name (relative path, '.' for the root itself) -> directory of every clean output under `root`."""
    if root is None:
        return {}
    found = {}
    for d, files in walk_dirs(root):
        if STATS_FILE in files and _is_clean_stats(d / STATS_FILE):
            found[relative_name(root, d)] = d
    return found


def shards(path: Path) -> list[Path]:
    """The output's Parquet shards, in order (not the hidden .stage1 ones)."""
    return sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))


def read_stats(path: Path) -> dict[str, Any]:
    """stats.json as clean wrote it."""
    stats = _load_json(path / STATS_FILE)
    if not isinstance(stats, dict):
        raise OutputError("stats.json is not an object")
    return stats


def dropped(path: Path, step: str | None, reason: str | None, offset: int, limit: int) -> dict[str, Any]:
    """A page of the dropped samples, filtered by step and reason; `reasons` counts the samples kept per
    (step, reason), which is fewer than stats.json's drop counts: clean keeps a few samples of each."""
    samples = _load_json(path / SAMPLES_FILE) if (path / SAMPLES_FILE).exists() else []
    if not isinstance(samples, list):
        raise OutputError(f"{SAMPLES_FILE} is not a list")
    samples = [s for s in samples if isinstance(s, dict)]
    counts: dict[str, dict[str, int]] = {}
    for s in samples:
        by_reason = counts.setdefault(str(s.get("step")), {})
        by_reason[str(s.get("reason"))] = by_reason.get(str(s.get("reason")), 0) + 1
    chosen = [
        s for s in samples if (step is None or s.get("step") == step) and (reason is None or s.get("reason") == reason)
    ]
    return {"total": len(chosen), "offset": offset, "items": chosen[offset : offset + limit], "samples": counts}


def _row(shard: str, index: int, row: dict[str, Any], whole: bool) -> dict[str, Any]:
    text = row.get("text") or ""
    meta: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("id", "url", "text"):
            continue
        if key == "metadata" and isinstance(value, str):
            try:
                extra = json.loads(value)
            except json.JSONDecodeError:
                extra = {"metadata": value}
            meta.update(extra if isinstance(extra, dict) else {"metadata": value})
        elif value is not None:
            meta[key] = value
    return {
        "shard": shard,
        "row": index,
        "id": row.get("id"),
        "url": row.get("url"),
        "chars": len(text),
        "text": text if whole else text[:EXCERPT_CHARS],
        "metadata": meta,
    }


def search(path: Path, query: str, offset: int, limit: int) -> dict[str, Any]:
    """A page of the kept documents whose text or URL contains `query` (case-insensitive; empty: all)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    items: list[dict[str, Any]] = []
    matched = scanned = 0
    truncated = False
    for shard in shards(path):
        if scanned >= MAX_SCAN_ROWS:
            truncated = True
            break
        table = pq.read_table(shard)
        if scanned + table.num_rows > MAX_SCAN_ROWS:
            table, truncated = table.slice(0, MAX_SCAN_ROWS - scanned), True
        scanned += table.num_rows
        names = table.column_names
        if query:
            hits = pc.match_substring(table.column("text"), query, ignore_case=True)
            if "url" in names:
                hits = pc.or_(hits, pc.match_substring(table.column("url"), query, ignore_case=True))
            indices = [i for i, hit in enumerate(hits.to_pylist()) if hit]
        else:
            indices = list(range(table.num_rows))
        for i in indices:
            if offset <= matched < offset + limit:
                items.append(_row(shard.name, i, table.slice(i, 1).to_pylist()[0], whole=False))
            matched += 1
    return {"total": matched, "offset": offset, "scanned": scanned, "truncated": truncated, "items": items}


def document(path: Path, shard: str, row: int) -> dict[str, Any] | None:
    """One kept document whole, by shard file name and row; None if there is no such row."""
    import pyarrow.parquet as pq

    files = {p.name: p for p in shards(path)}
    if shard not in files:
        return None
    meta = pq.read_metadata(files[shard])
    if not 0 <= row < meta.num_rows:
        return None
    table = pq.read_table(files[shard])
    return _row(shard, row, table.slice(row, 1).to_pylist()[0], whole=True)
