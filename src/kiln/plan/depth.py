"""The depth dial: one integer sets a model's width, heads, batch and learning rate.

The rule is nanochat's (Karpathy 2025, `scripts/base_train.py`): width = 64·depth ("aspect ratio" 64) rounded up
to a multiple of the 128-wide attention head, heads = width / 128, a batch of 2^19 = 524,288 tokens, Muon at
0.02 for the hidden matrices whatever the width. kiln's AdamW rate follows the way nanochat scales its AdamW
groups, ∝ 1/sqrt(width/768), anchored at GPT-3 Small's 6e-4 for width 768 (Brown et al. 2020, Table 2.1). The
architecture is kiln's Llama style (RoPE, RMSNorm, SwiGLU, no biases, untied embeddings), as the llama presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kiln.model import GPTConfig

ASPECT_RATIO = 64
"""Width per layer (nanochat's --aspect-ratio)."""
HEAD_DIM = 128
"""Target attention head width (nanochat's --head-dim)."""
BATCH_TOKENS = 2**19
"""Tokens per optimizer step (nanochat's --total-batch-size)."""
MUON_LR = 0.02
"""Muon's rate for hidden matrices (nanochat's matrix_lr); width-independent under Muon."""


@dataclass(frozen=True)
class DepthShape:
    """What one depth number derives."""

    depth: int
    model: GPTConfig
    batch_tokens: int
    lr: float
    """AdamW peak learning rate."""
    muon_lr: float


def depth_shape(depth: int, *, vocab_size: int, block_size: int, aspect_ratio: int = ASPECT_RATIO,
                head_dim: int = HEAD_DIM) -> DepthShape:  # fmt: skip
    """The model and hyperparameters of `depth` layers. A width under one head gets a single head of that width
    (tiny CPU models); `aspect_ratio`/`head_dim` change the rule's two constants (kiln sweep uses smaller ones)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    raw = depth * aspect_ratio
    width = head_dim * math.ceil(raw / head_dim) if raw >= head_dim else raw
    heads = max(1, width // head_dim)
    model = GPTConfig(
        vocab_size=vocab_size,
        block_size=block_size,
        n_layer=depth,
        n_head=heads,
        n_embd=width,
        pos_encoding="rope",
        norm="rmsnorm",
        activation="swiglu",
        bias=False,
        tie_embeddings=False,
    ).validate()
    lr = 6e-4 * math.sqrt(768 / width)
    return DepthShape(depth, model, BATCH_TOKENS, lr, MUON_LR)
