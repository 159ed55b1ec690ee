"""Finding files under a served directory, safely: a bounded walk, and names that can only point inside it.

The dashboard and data routes take names from the URL (`run=exp/a`); they are looked up among what a walk of the
configured directory found, never joined to a path and opened, so `../../etc/passwd` or an absolute path can
name nothing outside the directory (and neither can a symbolic link: the walk does not follow them).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from kiln.serve.errors import APIError

# Folders a walk does not enter: a run's checkpoints, data and TensorBoard events hold nothing the pages list, and
# a models directory can hold thousands of them.
SKIPPED_DIRS = frozenset({"checkpoints", "tensorboard", "data", "items", "tokenizer", "__pycache__", "node_modules"})
MAX_DEPTH = 5  # folders below the root a walk looks into
MAX_DIRS = 20_000  # folders a walk visits at most, so a huge tree costs a bounded time
FRESH_S = 2.0  # how long a walk's result is reused: the dashboard polls every run every 2 s, each poll needs it

T = TypeVar("T")


def reused_briefly(fn: Callable[[Path], T]) -> Callable[[Path], T]:
    """`fn(root)` computed at most once per FRESH_S seconds per root, so polling several runs costs one walk, not
    one per request; a new run or output still shows within seconds."""
    results: dict[Path, tuple[float, Any]] = {}

    @functools.wraps(fn)
    def wrapper(root: Path) -> T:
        now = time.monotonic()
        hit = results.get(root)
        if hit is not None and now - hit[0] < FRESH_S:
            return hit[1]
        value = fn(root)
        results[root] = (now, value)
        return value

    return wrapper


def walk_dirs(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """(directory, its file names) for `root` and the folders below it, breadth first, bounded, links not followed,
    hidden folders (a clean run's `.stage1`, a checkpoint being written) skipped."""
    root = Path(root)
    if not root.is_dir():
        return
    for visited, (current, dirs, files) in enumerate(os.walk(root, followlinks=False), start=1):
        if visited > MAX_DIRS:
            return
        depth = len(Path(current).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and depth < MAX_DEPTH)
        yield Path(current), files


def relative_name(root: Path, path: Path) -> str:
    """How a found directory is named in URLs: its path relative to the root, with '/' ('.' for the root)."""
    rel = Path(path).relative_to(root).as_posix()
    return rel if rel else "."


def pick(found: dict[str, Path], name: str, what: str, param: str) -> Path:
    """The directory `name` among those found, or 404 naming what was asked for (never a path outside them)."""
    path = found.get(name)
    if path is None:
        raise APIError(404, f"no {what} named '{name}'", param=param, code="not_found")
    return path
