"""Weight-only int8 decoding on CPUs (`dtype=int8` in `kiln generate` and `kiln serve`).

Decoding one sequence streams every weight from memory once per token, so on a CPU without bf16 hardware (AVX2
only) its speed is the memory bandwidth divided by the bytes of the weights, whatever the kernel: fp32 against fp32
cannot go much faster than transformers there (docs/benchmarks.md). Storing each linear layer's weight as int8 with
one scale per output row (symmetric: scale = max |w| / 127) streams a quarter of fp32's bytes; on a 2-core AVX2
EPYC a gpt2 decode at batch 1 went from 23.5 to 39.7 tokens/s (benchmarks/generate.py, docs/benchmarks.md). This
is what llama.cpp's Q8_0 does per block of 32 weights; a scale per row is coarser but is what PyTorch's own int8
matrix-vector kernel (`aten._weight_int8pack_mm`) takes, which is why it was chosen over a
hand-written kernel.

The kernel multiplies bf16 activations (its fp32 path is several times slower), so a layer's input is rounded to
bf16 and its output comes back in bf16 before the fp32 residual stream takes it: logits move by 1-2% of their
largest value, and a greedy token flips wherever the top two are that close (tests/generate/test_int8.py); on the
quickstart's trained model that cost what bf16 weights cost, about one greedy token in a hundred and no change in
loss (benchmarks/decode_dtypes.py). Norms, attention, the KV cache and sampling stay fp32. With
several rows (a batch, a prefill) the kernel is slower than oneDNN's packed fp32 on that EPYC, so int8 pays for one
stream at a time; it is opt-in and never picked by `auto`.

The int8 copies are made on first use and cached on the modules next to the fp32 weights (which the embedding,
tied to the LM head, still reads): memory grows by a quarter, it does not shrink. A layer whose input width is not
a multiple of 8 (the kernel reads 8 values at a time) keeps fp32.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

GROUP = 8
"""The kernel's inner step: input widths must be a multiple of it."""


def quantize(w: Tensor) -> tuple[Tensor, Tensor]:
    """(out, in) float weight -> (int8 weight, per-row fp32 scale) with w ~= q * scale[:, None]."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


@functools.cache
def available() -> bool:
    """Whether this PyTorch has the int8 kernel and it computes what it should here. The op is internal, and on
    shapes it does not support it returns garbage rather than an error, so a probe checks it once per process."""
    op = getattr(torch.ops.aten, "_weight_int8pack_mm", None)
    if op is None:
        return False
    try:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(24, 4 * GROUP, generator=g)
        x = torch.randn(3, 4 * GROUP, generator=g).to(torch.bfloat16)
        q, s = quantize(w)
        got = op(x, q, s.to(torch.bfloat16)).float()
        want = x.float() @ (q.float() * s.to(torch.bfloat16).float()[:, None]).T
        return bool((got - want).abs().max() <= 0.02 * want.abs().max())
    except (RuntimeError, TypeError):
        return False


def enable(model: nn.Module) -> nn.Module:
    """Mark `model` to decode with int8 weights (`cpu_fast.packed_linears` applies it); ValueError naming `dtype`
    where it cannot run."""
    p = next(model.parameters())
    if p.device.type != "cpu":
        raise ValueError(f"dtype: int8 decodes on a CPU only (this model is on {p.device.type}); use bfloat16 there")
    if p.dtype != torch.float32:
        raise ValueError(f"dtype: int8 quantises float32 weights, this model's are {p.dtype}")
    if not available():
        raise ValueError(f"dtype: int8 needs PyTorch's int8 CPU kernel, which torch {torch.__version__} lacks here")
    model.__dict__["_kiln_int8"] = True
    return model


def enabled(model: nn.Module) -> bool:
    return bool(model.__dict__.get("_kiln_int8"))


def applies(module: nn.Linear) -> bool:
    return module.in_features % GROUP == 0


def _weights(module: nn.Linear) -> tuple[Tensor, Tensor]:
    """`module`'s int8 weight and bf16 scales, made on first use and remade when the weight changes."""
    w = module.weight
    key = (w.data_ptr(), w._version)
    cached = module.__dict__.get("_kiln_int8_weights")
    if cached is None or cached[0] != key:
        q, s = quantize(w)
        cached = module.__dict__["_kiln_int8_weights"] = (key, q, s.to(torch.bfloat16))
    return cached[1], cached[2]


def linear(module: nn.Linear, x: Tensor) -> Tensor:
    """`module(x)` with its int8 weight: x rounded to bf16, the product returned in x's dtype."""
    q, s = _weights(module)
    flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous()
    y = torch.ops.aten._weight_int8pack_mm(flat, q, s).to(x.dtype).reshape(*x.shape[:-1], q.shape[0])
    return y if module.bias is None else y + module.bias


def cached_bytes(module: nn.Module) -> int:
    """Bytes of the int8 copy (weight and scales) this linear layer holds, 0 before its first decode."""
    cached = module.__dict__.get("_kiln_int8_weights")
    return 0 if cached is None else sum(t.numel() * t.element_size() for t in cached[1:])


def release(model: nn.Module) -> None:
    """Drop the cached int8 copies (the mark stays: they are remade on the next decode)."""
    for m in model.modules():
        m.__dict__.pop("_kiln_int8_weights", None)
