"""Fixed-shape decoding for the engine (`stream_batch(..., static_decode=True)`): a pool of KV caches per batch-size
bucket, each with its `StaticStep`, captured once as a CUDA graph on a GPU and replayed for every token after.

Why: decoding a small model on a GPU is bound by kernel launches, not arithmetic — each token is a few hundred tiny
kernels, each launched from Python. A CUDA graph records them once and replays them with one launch. A graph fixes
every shape and address, hence the buckets: a batch of 5 runs in the 8-row cache (the 3 extra rows decode copies
of the last prompt, and their tokens are dropped), so 7 graphs (1, 2, 4, ..., 64) cover every batch up to 64 and
each is captured on its first use, then reused by later calls. The caches span the whole context (block_size
slots), so one graph serves every prompt length.

On a CPU, or for a mixture-of-experts model (its routing has data-dependent shapes a graph cannot hold), the same
step runs eagerly: that is how the CPU tests check it against the ordinary decode. The pool lives on the model
object, as the packed CPU weights do; like the model itself, it serves one caller at a time.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from kiln.model.gpt import GPT
from kiln.model.static_step import StaticStep

BUCKETS = (1, 2, 4, 8, 16, 32, 64)
"""Batch sizes that get their own cache and graph; a larger batch rounds up to a multiple of the last."""


def bucket(n: int) -> int:
    """The cache rows a batch of `n` sequences decodes in."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    for b in BUCKETS:
        if n <= b:
            return b
    return -(-n // BUCKETS[-1]) * BUCKETS[-1]


class CudaGraphStep:
    """A `StaticStep` captured as a CUDA graph on its first call, replayed on every call after."""

    def __init__(self, step: StaticStep) -> None:
        self.step = step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: Tensor | None = None

    def __call__(self) -> Tensor:
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.out is not None
        self.graph.replay()
        return self.out

    def _capture(self) -> None:
        c, step = self.step.cache, self.step
        # Warm-up runs (lazy kernel and cuBLAS initialisation must not happen inside a capture) write the current
        # slot and advance the counters: keep them and put them back, so the first replay is the real first step.
        kept = [t.clone() for t in (step.slot, c.n_valid, c.pos, c.valid)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = step()
        for t, saved in zip((step.slot, c.n_valid, c.pos, c.valid), kept, strict=True):
            t.copy_(saved)
        self.graph = graph


class StaticDecoder:
    """A cache of `rows` x block_size slots, its fixed-shape step, and (on CUDA) the step's graph."""

    def __init__(self, model: GPT, rows: int, *, graph: bool) -> None:
        self.rows = rows
        self.cache = model.new_cache(rows, model.config.block_size)
        self.cache.k.zero_()  # masked slots enter the matmuls: they must hold finite numbers (see StaticStep)
        self.cache.v.zero_()
        self.step = StaticStep(model, self.cache)
        self.run = CudaGraphStep(self.step) if graph else self.step

    def decode(self, ids: Tensor) -> Tensor:
        """(rows, 1) token ids -> (rows, vocab) logits of the next token; the cache advances one slot."""
        self.step.ids.copy_(ids)
        logits = self.run().clone()  # a graph's output buffer is overwritten by the next replay
        self.step.advance()
        return logits


class _Pool(dict):
    """The decoders of one model. A copy of the model (deepcopy, pickle) starts with an empty pool: caches are
    scratch space, and a captured CUDA graph cannot be copied at all."""

    def __deepcopy__(self, memo: dict) -> _Pool:
        return _Pool()

    def __reduce__(self) -> tuple:
        return (_Pool, ())


def static_decoder(model: GPT, n: int, *, cuda_graphs: bool = True) -> StaticDecoder:
    """The pooled decoder for a batch of `n` on this model's device and dtype (made on first use).

    `cuda_graphs` captures graphs where they work: a CUDA device and a dense (not mixture-of-experts) model."""
    weight = model.lm_head.weight
    graph = cuda_graphs and weight.device.type == "cuda"
    if graph and model.config.n_experts:
        warnings.warn("CUDA graphs skipped: mixture-of-experts routing has data-dependent shapes", stacklevel=2)
        graph = False
    pool: _Pool = model.__dict__.setdefault("_kiln_static_decoders", _Pool())
    key = (bucket(n), weight.device, weight.dtype, model.config.block_size, graph)
    if key not in pool:
        pool[key] = StaticDecoder(model, key[0], graph=graph)
    return pool[key]


def release(model: GPT) -> None:
    """Drop the pooled caches and graphs (they hold rows x block_size of keys and values per bucket)."""
    model.__dict__.pop("_kiln_static_decoders", None)
