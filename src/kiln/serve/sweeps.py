"""Scaling sweeps under the models directory, for the dashboard: `kiln sweep` writes `fit.json` (its summary: the
runs and the fitted laws) and the figure `sweep.svg`/`sweep.png` beside it (see `kiln.plan.sweep`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln.serve.found import relative_name, reused_briefly, walk_dirs

FIT_FILE = "fit.json"
PLOT_FILES = {"sweep.svg": "image/svg+xml", "sweep.png": "image/png"}  # the only files the plot route serves
MAX_FIT_BYTES = 4 << 20


@reused_briefly
def find_sweeps(root: Path) -> dict[str, Path]:
    """name (relative path) -> directory of every sweep (a folder with fit.json) under `root`."""
    return {relative_name(root, d): d for d, files in walk_dirs(root) if FIT_FILE in files}


def read_sweep(name: str, path: Path) -> dict[str, Any]:
    """The sweep's runs and fits as its fit.json has them, and which plot files exist; `problem` if unreadable."""
    plots = [f for f in PLOT_FILES if (path / f).is_file()]
    try:
        if (path / FIT_FILE).stat().st_size > MAX_FIT_BYTES:
            raise ValueError("too large")
        fit = json.loads((path / FIT_FILE).read_text(encoding="utf-8"))
        if not isinstance(fit, dict):
            raise ValueError("not an object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {"name": name, "plots": plots, "problem": f"fit.json cannot be read ({e})"}
    runs = [r for r in fit.get("runs", []) if isinstance(r, dict)]
    keep = ("name", "budget", "params", "tokens", "val_loss")
    return {
        "name": name,
        "plots": plots,
        "runs": [{k: r.get(k) for k in keep} for r in runs],
        "approach2": fit.get("approach2"),
        "approach3": fit.get("approach3"),
        "notes": fit.get("notes", []),
    }
