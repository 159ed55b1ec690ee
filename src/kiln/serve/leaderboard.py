"""Eval results across checkpoints, for the dashboard's leaderboard: every `results.json` that `kiln eval ...
out_dir=DIR` wrote under the models directory, as one table of checkpoints x tasks.

A results.json is recognised by its keys (`checkpoint` and `tasks`, see `kiln.eval.run.EvalSummary`), not by its
place, since out_dir can be anywhere; a file that cannot be read or has another shape is listed with its problem
rather than failing the whole table. Only the keys shown are read, so keys the eval stage adds later pass through.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kiln.serve.found import relative_name, reused_briefly, walk_dirs

RESULTS_FILE = "results.json"
MAX_RESULTS_BYTES = 8 << 20
SCORE_KEYS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "centred", "items", "perplexity")


def _number(value: Any) -> float | None:
    """A finite number as JSON can carry it, else None (NaN and infinities are not JSON)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def read_result(root: Path, file: Path) -> dict[str, Any] | None:
    """One leaderboard row from a results.json, None if it is not kiln eval's, a row with `problem` if broken."""
    name = relative_name(root, file.parent)
    try:
        if file.stat().st_size > MAX_RESULTS_BYTES:
            return {"name": name, "problem": f"larger than {MAX_RESULTS_BYTES:,} bytes"}
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {"name": name, "problem": f"cannot be read as JSON ({type(e).__name__})"}
    if not isinstance(data, dict) or "tasks" not in data or "checkpoint" not in data:
        return None
    tasks = data["tasks"] if isinstance(data["tasks"], dict) else {}
    row_tasks = {
        task: {k: _number(scores.get(k)) for k in SCORE_KEYS if k in scores}
        for task, scores in tasks.items()
        if isinstance(scores, dict)
    }
    bpb = data.get("bits_per_byte") if isinstance(data.get("bits_per_byte"), dict) else {}
    return {
        "name": name,
        "checkpoint": str(data["checkpoint"]),
        "tasks": row_tasks,
        "centred": _number(data.get("centred")),
        "bits_per_byte": {src: _number(v.get("bits_per_byte")) for src, v in bpb.items() if isinstance(v, dict)},
        "modified": file.stat().st_mtime,
    }


@reused_briefly
def leaderboard(root: Path) -> dict[str, Any]:
    """Rows (best centred score first) and the union of their task names (sorted), for a checkpoints x tasks table."""
    rows = [
        row
        for d, files in walk_dirs(root)
        if RESULTS_FILE in files
        for row in [read_result(root, d / RESULTS_FILE)]
        if row is not None
    ]
    rows.sort(key=lambda r: (r.get("centred") is None, -(r.get("centred") or 0.0), r["name"]))
    tasks = sorted({t for r in rows for t in r.get("tasks", {})})
    return {"tasks": tasks, "rows": rows}
