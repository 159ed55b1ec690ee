"""Training runs under the models directory, for the dashboard: where they are, their metrics and their config.

A run is a directory holding `metrics.jsonl` (what `kiln train` and the post-training stages write, one JSON object
per logged step, flushed line by line, so it can be read while the run trains). The page polls with the byte offset
it has read up to, so only new lines travel. A line still being written (no newline yet) is left for the next poll;
a complete line that is not a JSON object is skipped and counted, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.serve.found import relative_name, reused_briefly, walk_dirs

METRICS_FILE = "metrics.jsonl"
MAX_READ_BYTES = 4 << 20  # per poll: a long run's history arrives in a few polls rather than one huge answer
MAX_CONFIG_BYTES = 256 << 10


@dataclass
class MetricsChunk:
    """Lines of a metrics.jsonl from a byte offset: the records, where the next poll starts, and what was odd."""

    records: list[dict[str, Any]]
    next_offset: int
    skipped: int  # complete lines that are not JSON objects
    reset: bool  # the file is shorter than the offset asked for (a resumed run rewrote it): read from the start
    size: int  # the file's size now; next_offset < size means more is waiting


@reused_briefly
def find_runs(root: Path) -> dict[str, Path]:
    """name (relative path) -> directory of every run under `root`."""
    return {relative_name(root, d): d for d, files in walk_dirs(root) if METRICS_FILE in files}


def run_info(name: str, path: Path) -> dict[str, Any]:
    """What the run list shows: the name, the stage that wrote it (from its kiln-<stage>.toml), when it changed."""
    config = config_file(path)
    stage = config.name[len("kiln-") : -len(".toml")] if config else None
    metrics = path / METRICS_FILE
    try:
        stat = metrics.stat()
        size, modified = stat.st_size, stat.st_mtime
    except OSError:
        size, modified = 0, None
    return {"name": name, "stage": stage, "bytes": size, "modified": modified}


def config_file(path: Path) -> Path | None:
    """The run's resolved config, `kiln-<stage>.toml` (train, sft, dpo, reward, rl, ...), if it wrote one."""
    found = sorted(path.glob("kiln-*.toml"))
    return found[0] if found else None


def read_config(path: Path) -> dict[str, Any]:
    """The config file's name and text (bounded), or why there is none."""
    file = config_file(path)
    if file is None:
        return {"file": None, "text": "", "note": "this run has no kiln-<stage>.toml"}
    with file.open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    text = raw[:MAX_CONFIG_BYTES].decode("utf-8", errors="replace")
    note = f"shortened to its first {MAX_CONFIG_BYTES:,} bytes" if len(raw) > MAX_CONFIG_BYTES else None
    return {"file": file.name, "text": text, "note": note}


def read_metrics(path: Path, offset: int) -> MetricsChunk:
    """The complete lines of `path/metrics.jsonl` from byte `offset` (at most MAX_READ_BYTES of them)."""
    file = path / METRICS_FILE
    try:
        f = file.open("rb")
    except FileNotFoundError:
        return MetricsChunk([], 0, 0, offset > 0, 0)
    with f:
        size = f.seek(0, 2)
        reset = offset > size
        start = 0 if reset else offset
        f.seek(start)
        data = f.read(MAX_READ_BYTES)
    end = data.rfind(b"\n") + 1  # 0 when no line is complete yet: the partial one waits for the next poll
    records, skipped = [], 0
    if end == 0 and len(data) == MAX_READ_BYTES:  # one line longer than a whole read: skip it, or polls stall
        return MetricsChunk([], start + len(data), 1, reset, size)
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return MetricsChunk(records, start + end, skipped, reset, size)
