"""Causal self-attention with multi-head, grouped-query and multi-query variants, through PyTorch's
`scaled_dot_product_attention` (the flash / memory-efficient kernels on GPU, a fused kernel on CPU)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kiln.model.config import GPTConfig
from kiln.model.kv_cache import KVCache
from kiln.model.positions import apply_rope


class Attention(nn.Module):
    """One fused q/k/v projection (one matmul, not three), optional RoPE, SDPA, and an output projection."""

    def __init__(self, cfg: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=cfg.bias)
        self.proj.residual = True  # marks GPT-2's scaled init for residual projections
        self.dropout = cfg.dropout

    def forward(
        self,
        x: Tensor,
        *,
        rope: tuple[Tensor, Tensor] | None,
        mask: Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
    ) -> Tensor:
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv(x).split([self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], dim=-1)
        q = q.view(b, t, self.n_head, hd).transpose(1, 2)
        k = k.view(b, t, self.n_kv_head, hd).transpose(1, 2)
        v = v.view(b, t, self.n_kv_head, hd).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
            if k.dtype != q.dtype:  # a bf16 model's fp32 cache on a CPU (gpt.cache_dtype): attend in fp32
                q = q.to(k.dtype)
                mask = mask.to(k.dtype) if mask is not None and mask.is_floating_point() else mask
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, self.n_head * hd).to(x.dtype))
