"""A decode step with fixed shapes: one token per row over the whole preallocated KV cache, so it can be captured
as a CUDA graph (or compiled with mode="reduce-overhead") and replayed token after token.

The ordinary step (`GPT.forward` with a cache) attends over the slots filled so far, `[0, length)`, sliced with a
Python int — a new shape and a host value every token, which a CUDA graph cannot replay. Here the slot to write
lives in a tensor: keys and values go in with `index_copy_`, attention reads all `max_len` slots under a mask
(slot <= the current one, valid, within the window), and positions come from the cache's per-row `n_valid`.
Every shape and address stays the same from token to token, and no value goes back to the host. Masked slots still
enter the attention matmuls with weight 0, so the cache must hold finite numbers there (`zero_` it once): fresh
memory may hold NaN bit patterns, and 0 * NaN is NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kiln.model.gpt import GPT
from kiln.model.kv_cache import KVCache
from kiln.model.masks import attention_mask
from kiln.model.positions import alibi_slopes, rope_cos_sin, sinusoidal


class StaticStep:
    """One fixed-shape decode step of `model` over all rows of `cache`: write `ids` (B, 1), call, get (B, vocab)
    logits. Prefill with the ordinary forward on the same cache, then `sync()` and step."""

    def __init__(self, model: GPT, cache: KVCache) -> None:
        self.model, self.cache = model, cache
        device = cache.k.device
        self.ids = torch.zeros(cache.batch_size, 1, dtype=torch.long, device=device)
        """The input buffer: a captured graph reads the token ids from this address."""
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        """The cache slot the next step writes (the ordinary path's Python `cache.length`, as a tensor)."""
        self.slots = torch.arange(cache.max_len, device=device)
        cfg = model.config
        self.alibi = alibi_slopes(cfg.n_head).to(device) if cfg.pos_encoding == "alibi" else None

    def sync(self) -> None:
        """Point the step at the cache's end (after a prefill or reset through the ordinary forward)."""
        self.slot.fill_(self.cache.length)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The cache protocol the attention layers call: write this token's keys/values at `slot`, return every slot."""
        c = self.cache
        c.k[layer].index_copy_(2, self.slot, k)
        c.v[layer].index_copy_(2, self.slot, v)
        return c.k[layer], c.v[layer]

    def __call__(self) -> Tensor:
        """Decode the tokens in `ids`: (B, vocab) logits; advances `slot` and each row's `n_valid` in place.

        The caller keeps `cache.length` (a Python int) in step with `slot` (`advance`), outside any graph."""
        m, c, cfg = self.model, self.cache, self.model.config
        positions = c.n_valid[:, None].clone()  # each row's next position: its real tokens so far
        c.pos.index_copy_(1, self.slot, positions)
        c.valid.index_fill_(1, self.slot, True)
        x = m.wte(self.ids)
        if cfg.pos_encoding == "learned":
            x = x + m.wpe(positions)  # no range check: it would read a value back to the host
        elif cfg.pos_encoding == "sinusoidal":
            x = x + sinusoidal(positions, cfg.n_embd).to(x.dtype)
        rope = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta) if cfg.pos_encoding == "rope" else None
        mask = attention_mask(
            self.slot,
            self.slots,
            positions,
            c.pos,
            c.valid,
            window=cfg.attention_window,
            alibi_slopes=self.alibi,
            dtype=x.dtype,
        )
        for block in m.blocks:
            x = block(x, rope=rope, mask=mask, is_causal=False, cache=self)
        c.n_valid += 1
        self.slot += 1
        return m.logits(m.norm_f(x))[:, -1]

    def advance(self) -> None:
        """Count the step on the host side too (the cache's Python `length`, which the caller's checks read)."""
        self.cache.length += 1
