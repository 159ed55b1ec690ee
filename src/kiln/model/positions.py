"""Position encodings: learned tables live in the model; the formula-based ones are computed here.

Everything is computed from explicit per-token positions (B, T) rather than from `arange(T)`, because a
left-padded batch or a KV-cached decode step puts tokens at positions that differ from their index.
All of it is computed in float32 on the fly (it is cheap) so a bf16 model keeps exact angles.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal(positions: Tensor, dim: int) -> Tensor:
    """The fixed sin/cos table of "Attention Is All You Need": (B, T) positions -> (B, T, dim)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / half))
    angles = positions.float()[..., None] * freqs
    out = torch.stack([angles.sin(), angles.cos()], dim=-1)  # interleave sin(2i), cos(2i+1)
    return out.flatten(-2)


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin of RoPE angles, shaped (B, 1, T, head_dim/2) to broadcast over heads."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq
    return angles.cos()[:, None], angles.sin()[:, None]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[i], x[i + d/2]) by each position's angle: the "rotate-half" layout of GPT-NeoX
    and Hugging Face's Llama, so their checkpoints load without permuting weights."""
    half = x.shape[-1] // 2
    work = torch.promote_types(x.dtype, torch.float32)  # at least fp32, so bf16 keeps exact angles
    x1, x2 = x[..., :half].to(work), x[..., half:].to(work)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


def alibi_slopes(n_head: int) -> Tensor:
    """Per-head ALiBi slopes (Press et al.): a geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power
    of two, and for other n the paper's interleaving of the next power of two's slopes."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        slopes = power_of_two(n_head)
    else:
        closest = 2 ** math.floor(math.log2(n_head))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)
