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
    """Rows of inputs x, targets y (IGNORE where not trained), segment ids (-1 on padding) and each target's
    weight in the loss (0 where not trained, 1 for an ordinary trained token)."""

    x: np.ndarray
    y: np.ndarray
    seg: np.ndarray
    w: np.ndarray

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
    examples: Sequence[tuple[list[int], Sequence[float], str]],
    block_size: int,
    *,
    packing: bool = True,
    overlong: str = "truncate",
    pad_id: int = 0,
) -> tuple[Windows, PackStats]:
    """examples: (ids, weights, source) -> windows of block_size tokens; a weight per id, 0 = not trained
    (`trained` flags work as weights 0 and 1)."""
    stats = PackStats(block_size=block_size)
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for ids, weights, source in examples:
        stats.examples += 1
        if len(ids) - 1 > block_size:
            if overlong == "drop":
                stats.dropped_too_long += 1
                stats.dropped_sources.append(f"{source}: {len(ids)} tokens > block_size {block_size} + 1")
                continue
            ids, weights = ids[: block_size + 1], weights[: block_size + 1]
            stats.truncated += 1
        x = np.asarray(ids[:-1], dtype=np.int64)
        w = np.asarray(weights[1:], dtype=np.float32)
        y = np.where(w > 0, np.asarray(ids[1:], dtype=np.int64), IGNORE)
        if not (y != IGNORE).any():
            stats.dropped_no_target += 1
            stats.dropped_sources.append(f"{source}: no assistant token within the first {block_size + 1}")
            continue
        pieces.append((x, y, w))

    rows: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    used = block_size  # forces a new row for the first piece
    for piece in pieces:
        if not packing or used + len(piece[0]) > block_size:
            rows.append([])
            used = 0
        rows[-1].append(piece)
        used += len(piece[0])

    n = len(rows)
    X = np.full((n, block_size), pad_id, dtype=np.int64)
    Y = np.full((n, block_size), IGNORE, dtype=np.int64)
    S = np.full((n, block_size), -1, dtype=np.int64)
    W = np.zeros((n, block_size), dtype=np.float32)
    for r, row in enumerate(rows):
        at = 0
        for s, (x, y, w) in enumerate(row):
            end = at + len(x)
            X[r, at:end], Y[r, at:end], S[r, at:end], W[r, at:end] = x, y, s, w
            at = end
    stats.rows = n
    stats.tokens = int((S >= 0).sum())
    stats.trained = int((Y != IGNORE).sum())
    return Windows(X, Y, S, W), stats
