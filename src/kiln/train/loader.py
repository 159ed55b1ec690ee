"""Training windows from token shards, deterministic, resumable and split across data-parallel ranks.

The shards are one stream cut into non-overlapping windows of block_size+1 tokens: in each shard, window k
starts at k*block_size, so neighbouring windows share exactly one token (the last target of one is the
first input of the next) and an epoch covers every token once. Windows never cross a shard boundary;
a shard too short for one window contributes none.

An epoch is a permutation of all windows, drawn from numpy's Generator seeded with (seed, epoch), so it
depends on nothing but those two numbers: the (epoch, cursor) pair in `state_dict` is enough to resume
exactly. Each step takes the next batch_size * world_size windows of the permutation and rank r keeps
[r*B, (r+1)*B), so ranks never see the same window and together they see exactly what one process with
batch size B * world_size would. When fewer than batch_size * world_size windows remain, the rest of the
epoch is dropped and the next epoch starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kiln.tokenize.shards import open_shard, read_header


class _Windows:
    """All windows of block_size+1 tokens across the shards, addressed by one global index."""

    def __init__(self, paths: Sequence[str | Path], block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if not paths:
            raise ValueError("no shard files given")
        self.block_size = block_size
        self.paths = [Path(p) for p in paths]
        self.shards = [open_shard(p) for p in self.paths]
        # Each shard's own vocabulary (its header's): a window is checked against it before it becomes a batch, so
        # a corrupt or hand-made shard is an error naming it, never an IndexError (or a device assert on a GPU)
        # inside the embedding.
        self.vocab = [read_header(p).vocab_size for p in self.paths]
        self.counts = [len(s) for s in self.shards]
        per_shard = np.array([max(0, (n - 1) // block_size) for n in self.counts], dtype=np.int64)
        self.total = int(per_shard.sum())
        if self.total == 0:
            longest = max(self.counts)
            raise ValueError(
                f"no shard is long enough for one window of block_size+1 = {block_size + 1} tokens "
                f"(longest has {longest} tokens, in {len(self.paths)} shard(s))"
            )
        self.ends = np.cumsum(per_shard)  # ends[i]: first global window index past shard i

    def window(self, j: int) -> np.ndarray:
        i = int(np.searchsorted(self.ends, j, side="right"))
        k = j - (int(self.ends[i - 1]) if i else 0)
        start = k * self.block_size
        w = np.asarray(self.shards[i][start : start + self.block_size + 1], dtype=np.int64)
        if w.size and int(w.max()) >= self.vocab[i]:
            at = start + int(np.argmax(w >= self.vocab[i]))
            raise ValueError(
                f"{self.paths[i]}: token id {int(self.shards[i][at])} at position {at} is outside the shard's "
                f"vocabulary [0, {self.vocab[i]}): the shard is corrupt (re-run kiln tokenize)"
            )
        return w

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        w = torch.from_numpy(np.stack([self.window(int(j)) for j in indices]))
        return w[:, :-1], w[:, 1:]

    def describe(self) -> list[list[Any]]:
        return [[p.name, n] for p, n in zip(self.paths, self.counts, strict=True)]


class TokenLoader:
    """Draws (B, T+1)-token windows from a list of shard files, as (x, y) = (w[:, :-1], w[:, 1:]) int64 tensors."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        batch_size: int,
        block_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        self.windows = _Windows(paths, block_size)
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._global = batch_size * world_size
        if self.windows.total < self._global:
            raise ValueError(
                f"the shards hold {self.windows.total} windows of {block_size + 1} tokens, fewer than one global "
                f"batch of batch_size {batch_size} x world_size {world_size} = {self._global}"
            )
        self.epoch, self.cursor = 0, 0
        self._perm: np.ndarray | None = None
        self._perm_epoch = -1

    def _permutation(self) -> np.ndarray:
        if self._perm is None or self._perm_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._perm = rng.permutation(self.windows.total)
            self._perm_epoch = self.epoch
        return self._perm

    def next_batch(self) -> tuple[Tensor, Tensor]:
        if self.cursor + self._global > self.windows.total:
            self.epoch, self.cursor = self.epoch + 1, 0
        chosen = self._permutation()[self.cursor : self.cursor + self._global]
        self.cursor += self._global
        mine = chosen[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return self.windows.batch(mine)

    def state_dict(self) -> dict:
        """Where the loader is, as plain ints and lists (JSON-serialisable). `rank` is informational:
        every rank is at the same (epoch, cursor), so any rank's state resumes any rank."""
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "seed": self.seed,
            "world_size": self.world_size,
            "rank": self.rank,
            "block_size": self.block_size,
            "batch_size": self.batch_size,
            "shards": self.windows.describe(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`: the next batch is the one the saved loader would have drawn next.
        The seed is taken from the state; this loader keeps its own rank."""
        keys = ("epoch", "cursor", "seed", "world_size", "block_size", "batch_size", "shards")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"loader state is missing {', '.join(missing)}")
        problems = [
            f"{key} is {state[key]} in the saved state but {mine} here"
            for key, mine in (
                ("block_size", self.block_size),
                ("batch_size", self.batch_size),
                ("world_size", self.world_size),
            )
            if state[key] != mine
        ]
        saved_shards = [list(s) for s in state["shards"]]
        if saved_shards != self.windows.describe():
            problems.append(
                f"the shards differ: saved [name, token count] {saved_shards} but given {self.windows.describe()}"
            )
        epoch, cursor = state["epoch"], state["cursor"]
        if not (isinstance(epoch, int) and epoch >= 0 and isinstance(cursor, int)):
            problems.append(f"epoch {epoch!r} / cursor {cursor!r} are not non-negative integers")
        elif not 0 <= cursor <= self.windows.total:
            problems.append(f"cursor {cursor} is outside the epoch's {self.windows.total} windows")
        if not isinstance(state["seed"], int):
            problems.append(f"seed {state['seed']!r} is not an integer")
        if problems:
            raise ValueError("cannot resume the token loader from this state: " + "; ".join(problems))
        self.seed, self.epoch, self.cursor = state["seed"], epoch, cursor
        self._perm, self._perm_epoch = None, -1


def val_batches(
    paths: Sequence[str | Path], batch_size: int, block_size: int, n_batches: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """The first n_batches * batch_size windows in shard order, as n_batches (x, y) batches: the same every call."""
    if batch_size < 1 or n_batches < 1:
        raise ValueError(f"batch_size and n_batches must be >= 1, got {batch_size} and {n_batches}")
    windows = _Windows(paths, block_size)
    needed = batch_size * n_batches
    if windows.total < needed:
        raise ValueError(
            f"validation needs {n_batches} batches of {batch_size} windows ({needed}), "
            f"but the shards hold only {windows.total} windows of {block_size + 1} tokens"
        )

    def generate() -> Iterator[tuple[Tensor, Tensor]]:
        for b in range(n_batches):
            yield windows.batch(range(b * batch_size, (b + 1) * batch_size))

    return generate()


def count_windows(paths: Sequence[str | Path], block_size: int) -> int:
    """How many non-overlapping windows of block_size+1 tokens the shards hold (0 if none fits)."""
    try:
        return _Windows(paths, block_size).total
    except ValueError:
        return 0
