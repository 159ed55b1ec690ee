"""How each training stage of the quickstart picks up: resume its own run where a checkpoint exists, else start."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def resume_or_start(load: Callable[[None, list[str]], Any], out_dir: Path, settings: Sequence[str]) -> Any:
    """`load(None, overrides)` (a stage's config loader) resuming `out_dir` if it holds a checkpoint (an interrupted
    quickstart goes on from there), else starting afresh there with `settings` (overwriting a run that never saved
    one)."""
    from kiln.model.checkpoint import latest_checkpoint

    if out_dir.exists() and latest_checkpoint(out_dir) is not None:
        return load(None, [f"resume={out_dir}"])
    return load(None, [*settings, "overwrite=true"])
