"""The data of a fine-tuning run: conversations rendered, split into train and held-out, and packed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from kiln.posttrain.conversations import Conversation, read_conversations
from kiln.posttrain.packing import IGNORE, PackStats, Windows, pack
from kiln.posttrain.render import render_for_training, require_chat_tokens, weigh_words
from kiln.tokenizer import Tokenizer

T = TypeVar("T")


@dataclass
class SFTData:
    tokenizer: Tokenizer
    train: Windows
    val: Windows
    train_stats: PackStats
    val_stats: PackStats
    conversations: int
    weighted: bool = False
    """Whether some trained tokens weigh other than 1 (keyword_weight): the loss is then a weighted mean."""


def held_out(key: Any, fraction: float) -> bool:
    """A stable split by a record's text (its `key`: a conversation's turns, a pair's prompt and replies), not
    its position, so adding files does not reshuffle it."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def split_held_out(items: list[T], key: Callable[[T], Any], fraction: float) -> tuple[list[T], list[T]]:
    """(train, held out) by `held_out`, with at least one item on each side where there are two or more: a small
    set can hash wholly to one side (an arena export of three pairs did, all held out), which left nothing to
    train on or nothing to evaluate."""
    out = [held_out(key(x), fraction) for x in items]  # one hash an item
    val = [x for x, o in zip(items, out, strict=True) if o]
    train = [x for x, o in zip(items, out, strict=True) if not o]
    if not val:
        val, train = train[-1:], train[:-1]
    elif not train and len(val) > 1:
        train, val = val[:1], val[1:]
    return train, val


def prepare_sft_data(
    tokenizer: Tokenizer,
    inputs: list[str],
    block_size: int,
    *,
    val_fraction: float,
    packing: bool,
    overlong: str,
    max_examples: int | None,
    where: str,
    keyword_weight: float = 1.0,
) -> SFTData:
    require_chat_tokens(tokenizer, where)
    convs = read_conversations(inputs)
    if max_examples is not None:
        convs = convs[:max_examples]
    val_convs = [c for c in convs if held_out(c.turns, val_fraction)]
    train_convs = [c for c in convs if not held_out(c.turns, val_fraction)]
    if not val_convs:  # a small file may hash none into the held-out share: hold out its last conversation
        val_convs, train_convs = train_convs[-1:], train_convs[:-1]
    if not train_convs:
        raise ValueError(f"{', '.join(inputs)}: too few conversations to hold {val_fraction:.0%} out and train")

    def example(c: Conversation) -> tuple[list[int], list[float], str]:
        ids, trained = render_for_training(tokenizer, c.turns)
        return ids, weigh_words(tokenizer, ids, trained, c.words, keyword_weight), c.source

    def examples(cs: list[Conversation]) -> list[tuple[list[int], list[float], str]]:
        return [example(c) for c in cs]

    train, train_stats = pack(examples(train_convs), block_size, packing=packing, overlong=overlong)
    val, val_stats = pack(examples(val_convs), block_size, packing=packing, overlong=overlong)
    if len(train) == 0:
        raise ValueError(f"no training conversation has an assistant token within the context ({block_size})")
    if len(val) == 0:
        raise ValueError("no held-out conversation has an assistant token within the context; raise val_fraction")
    weighted = keyword_weight != 1.0 and bool(((train.w != 0) & (train.w != 1)).any())
    return SFTData(tokenizer, train, val, train_stats, val_stats, len(convs), weighted)


class SFTLoader:
    """Shuffled windows, epoch after epoch; each process takes its own rows of every global batch. The
    position (epoch, row) is the whole state, so a resumed run sees exactly the batches it would have."""

    def __init__(self, windows: Windows, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.w, self.batch, self.seed, self.rank, self.world = windows, batch_size, seed, rank, world_size
        self.epoch, self.pos = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.w))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = []
        global_batch = self.batch * self.world
        while len(rows) < global_batch:
            if self.pos >= len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(global_batch - len(rows), len(self._order) - self.pos)
            rows.extend(self._order[self.pos : self.pos + take].tolist())
            self.pos += take
        mine = rows[self.rank * self.batch : (self.rank + 1) * self.batch]
        x, y, s, w = self.w.x[mine], self.w.y[mine], self.w.seg[mine], self.w.w[mine]
        if not (y != IGNORE).any():
            raise ValueError("a batch has no trained token (every target is masked); check the data's assistant turns")
        # Columns that are padding in every row change no loss: cut them, so a batch costs its longest row, not
        # the context (what padding to the longest does in other trainers).
        n = int(np.flatnonzero((s >= 0).any(axis=0)).max()) + 1
        return tuple(torch.from_numpy(a[:, :n]) for a in (x, y, s, w))  # type: ignore[return-value]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "rows": len(self.w)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("rows") != len(self.w):
            raise ValueError(
                f"the data changed: the run was saved with {state.get('rows')} windows, now there are {len(self.w)}"
            )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._permutation(self.epoch)
