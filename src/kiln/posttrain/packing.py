"""Training examples -> fixed-size windows: several conversations packed into one row (or one per row).

Packing fills each row with whole conversations in order and marks each with its own segment id; the model's
`segments=` keeps attention inside a conversation and restarts positions, so a packed row computes exactly
what its conversations compute alone (tested) while wasting no compute on padding. A conversation longer
than the window is truncated (its first block_size + 1 tokens) or dropped, by config, and counted either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

IGNORE = -1  # the target index the loss skips


@dataclass
class Windows:
    """Rows of inputs x, targets y (IGNORE where not trained) and segment ids (-1 on padding)."""

    x: np.ndarray
    y: np.ndarray
    seg: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def trained_tokens(self) -> int:
        return int((self.y != IGNORE).sum())


@dataclass
class PackStats:
    examples: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_no_target: int = 0
    rows: int = 0
    tokens: int = 0
    """Real (non-padding) input tokens."""
    trained: int = 0
    block_size: int = 1
    dropped_sources: list[str] = field(default_factory=list)

    @property
    def fill(self) -> float:
        """Share of window slots holding real tokens (1.0 = no padding)."""
        return self.tokens / max(1, self.rows * self.block_size)


def pack(
    examples: Sequence[tuple[list[int], list[bool], str]],
    block_size: int,
    *,
    packing: bool = True,
    overlong: str = "truncate",
    pad_id: int = 0,
) -> tuple[Windows, PackStats]:
    """examples: (ids, trained, source) -> windows of block_size tokens."""
    stats = PackStats(block_size=block_size)
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    for ids, trained, source in examples:
        stats.examples += 1
        if len(ids) - 1 > block_size:
            if overlong == "drop":
                stats.dropped_too_long += 1
                stats.dropped_sources.append(f"{source}: {len(ids)} tokens > block_size {block_size} + 1")
                continue
            ids, trained = ids[: block_size + 1], trained[: block_size + 1]
            stats.truncated += 1
        x = np.asarray(ids[:-1], dtype=np.int64)
        y = np.where(np.asarray(trained[1:], dtype=bool), np.asarray(ids[1:], dtype=np.int64), IGNORE)
        if not (y != IGNORE).any():
            stats.dropped_no_target += 1
            stats.dropped_sources.append(f"{source}: no assistant token within the first {block_size + 1}")
            continue
        pieces.append((x, y))

    rows: list[list[tuple[np.ndarray, np.ndarray]]] = []
    used = block_size  # forces a new row for the first piece
    for x, y in pieces:
        if not packing or used + len(x) > block_size:
            rows.append([])
            used = 0
        rows[-1].append((x, y))
        used += len(x)

    n = len(rows)
    X = np.full((n, block_size), pad_id, dtype=np.int64)
    Y = np.full((n, block_size), IGNORE, dtype=np.int64)
    S = np.full((n, block_size), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for s, (x, y) in enumerate(row):
            X[r, at : at + len(x)], Y[r, at : at + len(x)], S[r, at : at + len(x)] = x, y, s
            at += len(x)
    stats.rows = n
    stats.tokens = int((S >= 0).sum())
    stats.trained = int((Y != IGNORE).sum())
    return Windows(X, Y, S), stats
