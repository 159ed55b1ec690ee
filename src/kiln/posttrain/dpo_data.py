"""Preference pairs rendered with kiln's chat template into two windows each, trained only on the reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kiln.posttrain.packing import IGNORE
from kiln.posttrain.pairs import Pair, read_pairs
from kiln.posttrain.render import render_for_training, require_chat_tokens
from kiln.posttrain.sft_data import split_held_out
from kiln.tokenizer import Tokenizer


@dataclass
class PairWindows:
    """Per pair i: chosen (xc, yc) and rejected (xr, yr) rows; ref_c/ref_r: the reference's log-probs."""

    xc: np.ndarray
    yc: np.ndarray
    xr: np.ndarray
    yr: np.ndarray
    ref_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ref_r: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.xc)


@dataclass
class DPOData:
    tokenizer: Tokenizer
    train: PairWindows
    val: PairWindows
    pairs: int
    truncated: int = 0
    dropped: int = 0


def _window(ids: list[int], trained: list[bool], block: int) -> tuple[np.ndarray, np.ndarray, bool]:
    truncated = len(ids) - 1 > block
    ids, trained = ids[: block + 1], trained[: block + 1]
    x = np.zeros(block, dtype=np.int64)
    y = np.full(block, IGNORE, dtype=np.int64)
    x[: len(ids) - 1] = ids[:-1]
    y[: len(ids) - 1] = np.where(np.asarray(trained[1:]), np.asarray(ids[1:]), IGNORE)
    return x, y, truncated


def render_pair(tok: Tokenizer, pair: Pair) -> tuple[tuple[list[int], list[bool]], tuple[list[int], list[bool]]]:
    """(ids, trained) of prompt + chosen and of prompt + rejected: only the reply (and its <|im_end|>) trained."""
    n_prompt = len(render_for_training(tok, pair.prompt)[0]) if pair.prompt else 0
    out = []
    for reply in (pair.chosen, pair.rejected):
        ids, trained = render_for_training(tok, [*pair.prompt, ("assistant", reply)])
        out.append((ids, [False] * n_prompt + trained[n_prompt:]))
    return out[0], out[1]


def windows(tok: Tokenizer, pairs: list[Pair], block: int, overlong: str) -> tuple[PairWindows, int, int]:
    rows: list[tuple[np.ndarray, ...]] = []
    truncated = dropped = 0
    for pair in pairs:
        (ci, cm), (ri, rm) = render_pair(tok, pair)
        xc, yc, tc = _window(ci, cm, block)
        xr, yr, tr = _window(ri, rm, block)
        if (tc or tr) and overlong == "drop":
            dropped += 1
            continue
        if not ((yc != IGNORE).any() and (yr != IGNORE).any()):
            dropped += 1  # the prompt alone fills the context: no reply token left to compare
            continue
        truncated += tc or tr
        rows.append((xc, yc, xr, yr))
    if not rows:
        return PairWindows(*(np.zeros((0, block), dtype=np.int64) for _ in range(4))), truncated, dropped
    return PairWindows(*(np.stack(col) for col in zip(*rows, strict=True))), truncated, dropped


def prepare_dpo_data(
    tok: Tokenizer, inputs: list[str], block: int, *, val_fraction: float, overlong: str, max_examples: int | None,
    where: str,
) -> DPOData:  # fmt: skip
    require_chat_tokens(tok, where)
    pairs = read_pairs(inputs)[:max_examples]
    train, val = split_held_out(pairs, lambda p: p.key, val_fraction)
    if not train:
        raise ValueError(f"{', '.join(inputs)}: too few pairs to hold {val_fraction:.0%} out and train")
    tw, t_trunc, t_drop = windows(tok, train, block, overlong)
    vw, _, _ = windows(tok, val, block, overlong)
    if len(tw) == 0 or len(vw) == 0:
        raise ValueError(f"no pair keeps a reply token within the context ({block}); raise block_size or shorten them")
    return DPOData(tok, tw, vw, len(pairs), t_trunc, t_drop)


def used_length(*targets: np.ndarray) -> int:
    """Columns up to the last trained target of any row: the rest is padding that changes no log-prob."""
    return max(int(np.flatnonzero((y != IGNORE).any(axis=0)).max()) + 1 for y in targets)


def pair_work(xc: torch.Tensor, yc: torch.Tensor, xr: torch.Tensor, yr: torch.Tensor, *, shared: bool,
              extra: int = 0) -> tuple[int, int, int]:  # fmt: skip
    """(real tokens, width of the separate rows, trained targets) of a forward over these pairs, for tokens/s and
    MFU: each sequence up to its last target (and `extra` tokens after it), the common prefix of a pair once when
    the two share one row (`share_prompts`), padding not counted."""
    yc_, yr_ = yc.cpu().numpy(), yr.cpu().numpy()
    w = yc_.shape[1]
    kc, kr = yc_ != IGNORE, yr_ != IGNORE
    ec = np.minimum(w - np.argmax(kc[:, ::-1], axis=1) + extra, w)
    er = np.minimum(w - np.argmax(kr[:, ::-1], axis=1) + extra, w)
    lengths = ec + er
    if shared:
        differ = (xc.cpu().numpy() != xr.cpu().numpy()) | (np.arange(w) >= np.minimum(ec, er)[:, None])
        lengths = lengths - np.where(differ.any(axis=1), np.argmax(differ, axis=1), w)
    # The width is the separate rows' in both cases: a shared row is wider, but each reply in it attends to the
    # prompt and itself only, the keys its separate row has (PaLM's attention term counts those).
    return int(lengths.sum()), int(max(ec.max(), er.max())), int(kc.sum() + kr.sum())


def pair_batch(w: PairWindows, rows: np.ndarray, extra: int = 0) -> tuple[torch.Tensor, ...]:
    """(xc, yc, xr, yr, rows) for these pairs, cut to the longest reply's end (not the whole context); `extra`
    more columns keep the tokens after it (a reward model reads the closing token itself)."""
    n = min(w.xc.shape[1], used_length(w.yc[rows], w.yr[rows]) + extra)
    return (*tuple(torch.from_numpy(a[rows][:, :n]) for a in (w.xc, w.yc, w.xr, w.yr)), torch.from_numpy(rows))


@torch.no_grad()
def evaluate_pairs(trainer: Any, score: Any, extra: int = 0) -> tuple[float, float]:
    """(mean loss, accuracy) over a trainer's held-out pair batches; `score(batch)` gives the batch's summed loss
    and the chosen and rejected rewards, and accuracy is the share of pairs whose chosen reply scores higher."""
    trainer.raw.eval()
    total, right, count = 0.0, 0, 0
    for idx in trainer.val:
        batch = tuple(t.to(trainer.device) for t in pair_batch(trainer.shards.val, idx, extra))
        loss_sum, rc, rr = score(batch)
        total += float(loss_sum)
        right += int((rc > rr).sum())
        count += len(idx)
    trainer.raw.train()
    return total / max(1, count), right / max(1, count)


class PairLoader:
    """Shuffled pairs epoch after epoch, each process its own share of every global batch; (epoch, position)
    is the whole state. Yields the pair indices too, to look up their reference log-probs."""

    def __init__(
        self, w: PairWindows, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, extra: int = 0
    ) -> None:
        self.w, self.batch, self.seed, self.rank, self.world = w, batch_size, seed, rank, world_size
        self.extra = extra
        self.epoch, self.pos = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.w))

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        rows: list[int] = []
        while len(rows) < self.batch * self.world:
            if self.pos >= len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(self.batch * self.world - len(rows), len(self._order) - self.pos)
            rows.extend(self._order[self.pos : self.pos + take].tolist())
            self.pos += take
        mine = np.asarray(rows[self.rank * self.batch : (self.rank + 1) * self.batch])
        # Cut to the batch's longest reply, not the whole context: these pairs are often a third of it, and the
        # padding columns change no log-prob but would cost the forward and backward as much as real tokens.
        return pair_batch(self.w, mine, self.extra)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "rows": len(self.w)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("rows") != len(self.w):
            raise ValueError(f"the data changed: the run was saved with {state.get('rows')} pairs, now {len(self.w)}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._permutation(self.epoch)
