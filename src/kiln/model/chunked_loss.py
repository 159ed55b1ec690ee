"""Cross-entropy through the LM head, a chunk of tokens at a time, without the full (tokens, vocab) logits.

The plain loss materialises logits for every token: for a 128k vocabulary and 64k tokens per micro-batch that is
32 GiB in fp32, kept alive for the backward pass, more than the rest of a small model's activations together.
Here each chunk's logits are computed, reduced to a loss sum and dropped; `torch.utils.checkpoint` recomputes
them chunk by chunk in the backward pass (one extra LM-head matmul, the price of never holding them all). The
result equals the plain path's mean loss, with the same ignore index, up to float summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -1
"""Targets with this id are not scored (the padding and prompt positions of kiln's batches)."""


def _chunk_loss_sum(x: Tensor, weight: Tensor, targets: Tensor, vocab_size: int) -> Tensor:
    """Summed cross-entropy of one chunk: its logits live only inside this call (and its recomputation)."""
    logits = F.linear(x, weight)[:, :vocab_size]  # padding rows of the head are never a prediction
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_cross_entropy(
    hidden: Tensor, head_weight: Tensor, targets: Tensor, chunk_tokens: int, vocab_size: int
) -> Tensor:
    """Mean cross-entropy of `hidden @ head_weight.T` (first `vocab_size` columns) against `targets`.

    hidden (..., n_embd), targets (...) with -1 = ignore; `chunk_tokens` tokens per LM-head matmul. As
    F.cross_entropy's mean, a batch with no scored token gives NaN (0 / 0).
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    x = hidden.reshape(-1, hidden.shape[-1])
    y = targets.reshape(-1)
    # Without autograd (evaluation) there is nothing to recompute: skip checkpoint's bookkeeping.
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or head_weight.requires_grad)
    total = x.new_zeros((), dtype=torch.float32)
    for start in range(0, x.shape[0], chunk_tokens):
        xc, yc = x[start : start + chunk_tokens], y[start : start + chunk_tokens]
        if needs_grad:
            part = checkpoint(_chunk_loss_sum, xc, head_weight, yc, vocab_size, use_reentrant=False)
        else:
            part = _chunk_loss_sum(xc, head_weight, yc, vocab_size)
        total = total + part
    return total / (y != IGNORE_INDEX).sum()
