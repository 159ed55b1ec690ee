"""The KV cache: keys and values of every processed token, so each new token costs one position's work.

One preallocated tensor per kind (layers, batch, kv-heads, slots, head_dim), written in place: no
`torch.cat` per step, so decoding allocates nothing and memory is known up front. With grouped-query
attention only the kv-heads are stored, which is the point of GQA at inference.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Keys/values plus, per slot, the token's position and whether it is real (not left padding)."""

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        # Uninitialised: a slot is always written before it is read (attention reads only [0, length)),
        # and zero-filling a gpt2-sized cache for batch 8 would cost more than a decode step.
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.pos = torch.zeros(batch_size, max_len, device=device, dtype=torch.long)
        self.valid = torch.zeros(batch_size, max_len, device=device, dtype=torch.bool)
        self.n_valid = torch.zeros(batch_size, device=device, dtype=torch.long)
        self.max_len = max_len
        self.length = 0
        self.padded = False  # any padding so far: then every step needs an explicit mask

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def reset(self) -> None:
        """Forget everything (the tensors are reused)."""
        self.length = 0
        self.padded = False
        self.n_valid.zero_()
        self.valid.zero_()

    def begin(self, positions: Tensor, valid: Tensor | None) -> None:
        """Record the positions and validity of the T tokens about to be written at slots [length, length+T)."""
        t = positions.shape[1]
        if self.length + t > self.max_len:
            raise ValueError(f"KV cache overflow: {self.length} + {t} tokens > max_len {self.max_len}")
        end = self.length + t
        self.pos[:, self.length : end] = positions
        if valid is None:
            self.valid[:, self.length : end] = True
            self.n_valid += t
        else:
            self.valid[:, self.length : end] = valid
            self.n_valid += valid.sum(1)
            self.padded = self.padded or not bool(valid.all())

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store this layer's new keys/values and return all keys/values so far (views, no copies)."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.length += t

    def rows(self, n: int) -> KVCache:
        """A cache over the first `n` rows that shares this one's memory: continuous batching keeps its
        active sequences in the leading rows and runs the model on those alone."""
        view = object.__new__(KVCache)
        view.k, view.v = self.k[:, :n], self.v[:, :n]
        view.pos, view.valid, view.n_valid = self.pos[:n], self.valid[:n], self.n_valid[:n]
        view.max_len, view.length, view.padded = self.max_len, self.length, self.padded
        return view

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
