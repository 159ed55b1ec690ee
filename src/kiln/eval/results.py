"""The leaderboard side of results.json: which checkpoint was scored, the aggregate with its standard error, and
JSON a browser can parse (schema in docs/formats.md, "Evaluation results").

A leaderboard across checkpoints (the playground's Dashboard) reads many results.json files and ranks them by
`centred`; each needs to say which checkpoint it scored (path, training step, its own val loss) and when, and
every number in it must be valid JSON: an undefined standard error (one item) is written as null, never NaN.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
"""Bumped only if a key changes meaning; keys are only ever added."""


def checkpoint_record(path: str | Path, meta: dict[str, Any], parameters: int) -> dict[str, Any]:
    """The scored checkpoint: its resolved directory, training step and validation figures when the trainer
    recorded them (an imported or hand-saved checkpoint has none: null), and its size."""
    return {
        "path": str(path),
        "name": Path(path).name,
        "step": meta.get("step"),
        "val_loss": meta.get("val_loss"),
        "val_bpb": meta.get("val_bpb"),
        "parameters": parameters,
    }


def centred_stderr(tasks: dict[str, dict[str, float]]) -> float:
    """Standard error of the mean centred score: each task's acc stderr rescaled like its acc (over 1 - random),
    the tasks taken as independent samples."""
    if not tasks:
        return math.nan
    var = sum((t["acc_stderr"] / (1 - t["random_baseline"])) ** 2 for t in tasks.values())
    return math.sqrt(var) / len(tasks)


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def json_safe(value: Any) -> Any:
    """NaN and infinities (not JSON; Python writes them anyway) as null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
