"""Which keys each query may attend to, as one (B, 1 or H, T, S) mask for scaled_dot_product_attention.

Indices are in *cache coordinates* (the slot a token occupies, padding included) and positions are the
token's position in its own sequence. Causality and window width are differences of slots, which left
padding does not change; the prefix-LM rule and padding need positions and validity per sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor


def attention_mask(
    q_slots: Tensor,
    k_slots: Tensor,
    q_pos: Tensor,
    k_pos: Tensor,
    k_valid: Tensor | None,
    *,
    window: int | None = None,
    prefix_len: int | Tensor | None = None,
    segments: Tensor | None = None,
    branches: Tensor | None = None,
    alibi_slopes: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Build the attention mask: boolean (True = attend), or additive float when ALiBi adds distance biases.

    q_slots (T,), k_slots (S,): cache slots; q_pos (B, T), k_pos (B, S): positions; k_valid (B, S): False on padding.
    prefix_len: tokens at positions < prefix_len see each other both ways (a prefix LM); int or (B,) tensor.
    segments (B, S): packed documents (no cache, so queries and keys are the same tokens); a query sees only keys
    of its own segment.
    branches (B, S): a shared prompt (0) and its continuations (1, 2, ...; no cache); a query sees the keys of its
    own branch and the prompt's. Distances are then differences of positions, not of slots: a second reply's
    first token is one step after the prompt's last, however long the first reply between them.
    """
    if branches is not None:
        dist = q_pos[:, :, None] - k_pos[:, None, :]  # (B, T, S)
        allowed = (dist >= 0) & ((branches[:, :, None] == branches[:, None, :]) | (branches == 0)[:, None, :])
        itself = torch.eye(len(q_slots), dtype=torch.bool, device=q_slots.device)[None]
    else:
        dist = (q_slots[:, None] - k_slots[None, :])[None]  # (1, T, S): how far back the key is
        allowed = dist >= 0
        itself = dist == 0
    if window is not None:
        allowed = allowed & (dist < window)
    if prefix_len is not None:
        p = torch.as_tensor(prefix_len, device=q_pos.device).reshape(-1, 1, 1)
        allowed = allowed | ((q_pos[:, :, None] < p) & (k_pos[:, None, :] < p))
    if k_valid is not None:
        allowed = allowed & k_valid[:, None, :]
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    # A query must see at least itself, or softmax over an empty row gives NaN (padding queries, whose
    # outputs are never used, would otherwise poison nothing but still trip anomaly checks).
    allowed = allowed | itself
    allowed = allowed[:, None]  # (B or 1, 1, T, S)
    if alibi_slopes is None:
        return allowed
    bias = -alibi_slopes.to(q_slots.device)[None, :, None, None] * dist.abs().float()[:, None]
    return bias.masked_fill(~allowed, float("-inf")).to(dtype)
