"""Chosen and rejected replies in one row behind one copy of their prompt (prefix sharing).

A preference pair's two sequences begin with the same prompt; the usual batch (TRL's, and kiln's with
`share_prompt=false`) runs that prompt through the model twice. Here row i holds the tokens the two sequences
share, then the rest of the chosen one, then the rest of the rejected one; the model's `branches=` makes each
reply attend to the prompt and to itself at the positions it would have after the prompt alone, so every log-prob
is what the separate rows give (up to float rounding), and the prompt costs one forward and one backward instead
of two (Wang et al. 2024, "Accelerating Direct Preference Optimization with Prefix Sharing").

The shared part is the longest common prefix of the two token rows, so replies that begin alike share those
tokens too, and a pair with nothing in common still works (an empty prompt branch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kiln.posttrain.packing import IGNORE

PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, -1


@dataclass
class SharedRows:
    """One row per pair, and where each trained target's logits come from."""

    x: Tensor
    """(B, T) input ids: shared prefix, the chosen reply's rest, the rejected reply's rest, padding."""
    branches: Tensor
    """(B, T) PROMPT, CHOSEN, REJECTED or PAD per position, for the model's `branches=`."""
    at: Tensor
    """(N,) flat indices into B * T: the position whose logits predict each target (the prompt's last position
    predicts the first token of both replies, so it appears twice)."""
    targets: Tensor
    """(N,) the target ids."""
    owner: Tensor
    """(N,) which sequence each target belongs to: pair i's chosen reply is i, its rejected reply B + i."""
    reads: Tensor
    """(2B,) flat indices of where each sequence's reward is read (a reward model): its closing token, the one
    after its last target, kept when `extra=1` (or its last position if the window ends first); chosen then
    rejected, as `owner` numbers them."""


def share_prompts(xc: Tensor, yc: Tensor, xr: Tensor, yr: Tensor, extra: int = 0) -> SharedRows:
    """(B, W) inputs and targets (IGNORE where not trained) of the chosen and the rejected rows -> shared rows;
    `extra` more tokens of each sequence after its last target are kept (the closing token a reward is read at)."""
    xc_, yc_, xr_, yr_ = (a.cpu().numpy() for a in (xc, yc, xr, yr))
    b, w = xc_.shape
    rows, kinds, at, targets, owner, reads = [], [], [], [], [], []
    for i in range(b):
        kc, kr = np.flatnonzero(yc_[i] != IGNORE), np.flatnonzero(yr_[i] != IGNORE)
        lc, lr = int(kc[-1]) + 1, int(kr[-1]) + 1  # nothing after the last target matters (but `extra`)
        ec, er = min(lc + extra, w), min(lr + extra, w)
        differ = np.flatnonzero(xc_[i, : min(ec, er)] != xr_[i, : min(ec, er)])
        m = int(differ[0]) if len(differ) else min(ec, er)  # the shared prefix

        def moved(cols: np.ndarray, m: int = m, ec: int = ec) -> np.ndarray:  # rejected columns -> this row's
            return np.where(cols < m, cols, cols - m + ec)

        rows.append(np.concatenate([xc_[i, :ec], xr_[i, m:er]]))
        kinds.append(np.repeat(np.array([PROMPT, CHOSEN, REJECTED]), [m, ec - m, er - m]))
        at += [(i, kc), (i, moved(kr))]  # chosen tokens stay where they were, rejected ones move past the chosen
        targets += [yc_[i, kc], yr_[i, kr]]
        owner += [np.full(len(kc), i), np.full(len(kr), b + i)]
        reads.append((i, min(lc, ec - 1), int(moved(np.array(min(lr, er - 1))))))
    t = max(len(r) for r in rows)
    x = np.zeros((b, t), dtype=np.int64)
    branches = np.full((b, t), PAD, dtype=np.int64)
    for i, (r, k) in enumerate(zip(rows, kinds, strict=True)):
        x[i, : len(r)], branches[i, : len(k)] = r, k
    flat = np.concatenate([i * t + cols for i, cols in at])
    read = np.array([i * t + c for i, c, _ in reads] + [i * t + r for i, _, r in reads], dtype=np.int64)
    arrays = (x, branches, flat, np.concatenate(targets), np.concatenate(owner), read)
    return SharedRows(*(torch.from_numpy(a).to(xc.device) for a in arrays))
