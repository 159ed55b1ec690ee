"""Faster inference on x86 CPUs: each linear layer through oneDNN with a pre-packed weight, or PyTorch's
default, whichever this CPU runs faster, measured once per model.

Decoding is a chain of matrix-vector products that stream every weight from memory once per token.
PyTorch's default CPU path (MKL sgemm on the (out, in) weight) reached ~15 GB/s for batch 1 on a 2-core
AVX2 machine; oneDNN with the weight reordered once into its blocked layout reached ~25 GB/s there, and
batch 8 cost about the same as batch 1 (gpt2's linear layers and LM head 35 -> 18 ms per step at batch 1,
55 -> 21 ms at batch 8). On a 2-core Intel Xeon with AMX the same packing lost at batch 1 (whole gpt2 decode:
29 vs 36 tokens/s) and won at batch 8 (181 vs 109) — CPUs differ, so the choice is made by timing both on the
model's own weights when it first decodes (`plan`), per batch regime and layer shape, rather than by a rule
that holds on one CPU.

bfloat16 weights go through the same packed path where the CPU computes in bf16 natively (AMX or
AVX512-BF16): on that Xeon, gpt2 decoding went from 36 to 50 tokens/s at batch 1 and from 179 to 341 at batch 8
(benchmarks/generate.py). This is what torch.compile's CPU backend does with frozen weights, without the
compile time. It is inference only: the packed copy is not a parameter and is rebuilt when a weight changes.
"""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.model import int8_weights

enabled = True
"""Set False to fall back to PyTorch's default linear (the benchmark does, to show the difference)."""

forced: str | None = None
""""packed" or "plain" to skip the measurement and use one path everywhere (tests and benchmarks)."""

REGIMES = (1, 8)
"""oneDNN packs a weight for an expected row count: 1 (one sequence decoding) or 8 (a batch, or a prefill)."""


def available() -> bool:
    """oneDNN's packed linear is in x86 CPU builds of PyTorch (an internal op, so check before use)."""
    return (
        platform.machine().lower() in ("x86_64", "amd64")
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AMX or AVX512-BF16) through oneDNN; where
    it does not, bf16 weights are emulated and slower than fp32."""
    try:
        return available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def regime(x: Tensor) -> int:
    """The packing regime for an input: 1 for a single row, 8 for several."""
    return 1 if x.numel() == x.shape[-1] else 8


def _packed(module: nn.Linear, hint: int) -> Tensor:
    """`module`'s weight in oneDNN's blocked layout for `hint` rows, made on first use, cached on the module."""
    w = module.weight
    key = (w.data_ptr(), w._version, w.dtype, hint)
    packs = module.__dict__.setdefault("_kiln_packed", {})
    packed = packs.get(hint)
    if packed is None or packed[0] != key:
        packed = packs[hint] = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), hint))
    return packed[1]


def _packed_linear(module: nn.Linear, x: Tensor, hint: int) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, _packed(module, hint), module.bias, "none", [], "")


def _forward(module: nn.Linear, x: Tensor) -> Tensor:
    hint = regime(x)
    if module.__dict__.get("_kiln_use_packed", {}).get(hint, True):
        return _packed_linear(module, x, hint)
    return F.linear(x, module.weight, module.bias)


def _time_best(fn, rounds: int = 3) -> float:
    fn()  # warm-up: packs the weights, touches the memory
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def plan(model: nn.Module) -> dict[int, str]:
    """Which path each regime uses for this model, timed once on its own linear layers and remembered on the
    model (until its dtype changes): "packed" or "plain" where every layer shape chose the same, else "mixed
    (packed for N of M shapes)". Costs a few passes over the weights (~0.3 s for gpt2); a layer whose packing
    loses drops its packed copy, which costs as much memory as its weight.

    The choice is made per layer shape, not for the model as a whole: on a 2-core AVX2 EPYC at one row, gpt2's
    qkv projection (768 -> 2304) and LM head ran faster packed (0.77 vs 1.05 ms, 12.2 vs 15.0 ms) while its
    768 -> 768 and 3072 -> 768 layers ran faster plain (0.23 vs 0.29 ms, 0.72 vs 1.00 ms): the best of each
    summed to 44 ms against 49 (all packed) and 51 (all plain)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    p = next(model.parameters())
    key = (p.dtype, p.device)
    cached = model.__dict__.get("_kiln_plan")
    if cached is not None and cached[0] == key and forced is None:
        return cached[1]
    shapes: dict[tuple[int, int], list[nn.Linear]] = {}
    for m in linears:
        shapes.setdefault((m.in_features, m.out_features), []).append(m)
    use: dict[tuple[int, int], dict[int, bool]] = {shape: {} for shape in shapes}
    chosen: dict[int, str] = {}
    for hint in REGIMES:
        for shape, group in shapes.items():
            use[shape][hint] = forced == "packed" if forced is not None else _packing_wins(group, hint, p)
        won = sum(use[shape][hint] for shape in shapes)
        chosen[hint] = "packed" if won == len(shapes) else "plain" if won == 0 else (
            f"mixed (packed for {won} of {len(shapes)} shapes)")  # fmt: skip
    for m in linears:
        m.__dict__["_kiln_use_packed"] = dict(use[(m.in_features, m.out_features)])
        packs = m.__dict__.get("_kiln_packed", {})
        for h, packed in m.__dict__["_kiln_use_packed"].items():
            if not packed:
                packs.pop(h, None)
    model.__dict__["_kiln_plan"] = (key, chosen)
    return chosen


def cached_bytes(model: nn.Module) -> int:
    """Bytes of the inference-only copies the linear layers hold beside their weights: oneDNN-packed ones (as large
    as the weight, per regime) and int8 ones. They are made on first decode, so a server counts them against its
    memory budget (`kiln serve --max-memory-gb`) once a model has decoded."""
    total = 0
    for m in model.modules():
        # list(): one C-level copy, safe while a decoding thread adds a pack.
        total += sum(t.numel() * t.element_size() for _, t in list(m.__dict__.get("_kiln_packed", {}).values()))
        total += int8_weights.cached_bytes(m)
    return total


def _packing_wins(group: list[nn.Linear], hint: int, p: Tensor) -> bool:
    """Whether these layers (one shape) run `hint` rows faster packed than plain, timed on their own weights."""
    xs = [torch.randn(hint, m.in_features, dtype=p.dtype, device=p.device) for m in group]

    def plain() -> None:
        for m, x in zip(group, xs, strict=True):
            F.linear(x, m.weight, m.bias)

    def packed() -> None:
        for m, x in zip(group, xs, strict=True):
            _packed_linear(m, x, hint)

    return _time_best(packed) <= _time_best(plain)


def applies_to(model: nn.Module) -> bool:
    p = next(model.parameters())
    if not (enabled and available() and p.device.type == "cpu" and not torch.is_grad_enabled()):
        return False
    return p.dtype == torch.float32 or (p.dtype == torch.bfloat16 and native_bf16())


@contextmanager
def packed_linears(model: nn.Module) -> Iterator[None]:
    """Within this block, every nn.Linear of `model` runs the path `plan` found faster on this CPU.

    Does nothing where it does not apply (GPU, fp16, bf16 without hardware support, gradients on, or a
    PyTorch without oneDNN), so callers can always use it. Packed weights are cached on the modules until
    the weights change. A model marked by `int8_weights.enable` runs its linear layers on int8 weights instead.
    """
    if int8_weights.enabled(model) and not torch.is_grad_enabled():
        with _int8_linears(model):
            yield
        return
    if not applies_to(model):
        yield
        return
    plan(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m in linears:
        m.forward = _forward.__get__(m)
    try:
        yield
    finally:
        for m in linears:
            del m.forward


@contextmanager
def _int8_linears(model: nn.Module) -> Iterator[None]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and int8_weights.applies(m)]
    for m in linears:
        m.forward = functools.partial(int8_weights.linear, m)
    try:
        yield
    finally:
        for m in linears:
            del m.forward


def release(model: nn.Module) -> None:
    """Drop the cached packed weights and the plan (packed weights cost as much memory as the weights)."""
    model.__dict__.pop("_kiln_plan", None)
    int8_weights.release(model)
    for m in model.modules():
        m.__dict__.pop("_kiln_packed", None)
        m.__dict__.pop("_kiln_use_packed", None)
