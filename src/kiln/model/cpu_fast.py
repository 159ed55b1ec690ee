"""Faster inference on x86 CPUs: each linear layer through oneDNN with a pre-packed weight, PyTorch's default,
or kiln's own kernels (`kiln.model.gemv`: fp32, one row on AVX2 CPUs, up to eight on AVX-512 ones; bf16 up to
eight rows on AVX512-BF16 ones), whichever this CPU runs fastest, measured once per model, batch regime and
layer shape.

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
Where the CPU has AVX512-BF16, `plan` times kiln's bf16 kernel too: on a 2-core Zen 4 EPYC it took every layer
at batch 1 (gpt2 bf16 decoding 52 -> 100 tokens/s against packed forced) and all but the LM head at batch 8
(364 -> 413).
"""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.model import gemv, huge_pages, int8_weights

enabled = True
"""Set False to fall back to PyTorch's default linear (the benchmark does, to show the difference)."""

forced: str | None = None
""""packed", "plain" or "gemv" to skip the measurement and use one path everywhere (tests and benchmarks); "gemv"
is for the dtypes and row counts the kernels take (`candidates`), so with it the other regimes run packed."""

PATHS = ("packed", "plain", "gemv")

REGIMES = (1, 8, 64)
"""Row counts timed apart: 1 (one sequence decoding), 8 (two to eight rows: a small batch) and 64 (more: a big
batch or a prefill). oneDNN packs a weight for an expected row count; the last two share one packed copy."""


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
    """The regime of an input: 1 for a single row, 8 for up to `gemv.MAX_ROWS`, 64 for more."""
    n = gemv.rows(x)
    return 1 if n == 1 else 8 if n <= gemv.MAX_ROWS else 64


def pack_hint(hint: int) -> int:
    """The row count a regime's packed weight is made for: one copy serves 8 and 64 rows (each costs as much memory
    as the weight)."""
    return min(hint, 8)


def _packed(module: nn.Linear, hint: int) -> Tensor:
    """`module`'s weight in oneDNN's blocked layout for `hint` rows, made on first use, cached on the module until
    the weight changes, which its version counter says: an in-place update that does not bump it (torch's fused
    CPU AdamW) must call `torch.autograd.graph.increment_version` on the weights, as kiln's Trainer does after
    every step, or decoding keeps the old weights."""
    hint = pack_hint(hint)
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
    path = module.__dict__.get("_kiln_path", {}).get(hint, "packed")
    if path == "packed":
        return _packed_linear(module, x, hint)
    if path == "gemv":
        return gemv.linear(module, x)  # F.linear itself for what the kernel does not take
    return F.linear(x, module.weight, module.bias)


def candidates(hint: int, dtype: torch.dtype) -> tuple[str, ...]:
    """The paths worth timing for this regime and dtype: kiln's kernels for fp32, one row where they built and a
    few rows where the several-rows kernel did (AVX-512); for bf16, one row or a few where the bf16 kernel built
    (AVX512-BF16)."""
    if dtype == torch.float32 and ((hint == 1 and gemv.library() is not None) or (hint == 8 and gemv.several_rows())):
        return PATHS
    if dtype == torch.bfloat16 and hint in (1, 8) and gemv.bf16_rows():
        return PATHS
    return PATHS[:2]


def best_times(
    calls: dict[str, Callable[[], object]], rounds: int = 3, min_seconds: float = 0.0, max_rounds: int = 49
) -> dict[str, float]:
    """Each call's best time over `rounds`, after a warm-up call each (it packs weights and touches the memory), or
    over more rounds (up to `max_rounds`) while the timing so far took under `min_seconds`, so calls of a few
    milliseconds are timed often enough that one interruption cannot decide. The calls take turns, round by round:
    timed one after another, a burst of load from a neighbour on a shared VM (the machines kiln is measured on vary
    2x in memory bandwidth from minute to minute) fell on one call's rounds only and could pick the slower path."""
    start = time.perf_counter()
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, float("inf"))
    done = 0
    while done < rounds or (done < max_rounds and time.perf_counter() - start < min_seconds):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - t)
        done += 1
    return best


def plan(model: nn.Module) -> dict[int, str]:
    """Which path each regime uses for this model, timed once on its own linear layers and remembered on the
    model (until its dtype changes): "packed", "plain" or "gemv" (`kiln.model.gemv`, kernels for one row or
    a few) where every layer shape chose the same, else e.g. "mixed (gemv for 3, packed for 1 of 4 shapes)". Costs
    a few passes over the weights per regime (~1-2 s for gpt2); a layer that runs packed in no regime drops its
    packed copy, which costs as much memory as its weight.

    The choice is made per layer shape, not for the model as a whole: on a 2-core AVX2 EPYC at one row, gpt2's
    qkv projection (768 -> 2304) and LM head ran faster packed (0.77 vs 1.05 ms, 12.2 vs 15.0 ms) while its
    768 -> 768 and 3072 -> 768 layers ran faster plain (0.23 vs 0.29 ms, 0.72 vs 1.00 ms): the best of each
    summed to 44 ms against 49 (all packed) and 51 (all plain).

    A new plan first moves the model's large weights into 2 MB pages where the OS has them (`huge_pages`): the
    kernels and PyTorch's own path then read them with a TLB miss per 2 MB instead of per 4 KB."""
    p = next(model.parameters())
    key = (p.dtype, p.device)
    cached = model.__dict__.get("_kiln_plan")
    if cached is not None and cached[0] == key and forced is None:
        return cached[1]
    # Before timing anything: the paths are timed on the weights where decoding will read them.
    huge_pages.move_parameters(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    shapes: dict[tuple[int, int], list[nn.Linear]] = {}
    for m in linears:
        shapes.setdefault((m.in_features, m.out_features), []).append(m)
    use: dict[tuple[int, int], dict[int, str]] = {shape: {} for shape in shapes}
    chosen: dict[int, str] = {}
    for hint in REGIMES:
        paths = candidates(hint, p.dtype)
        for shape, group in shapes.items():
            if forced is not None:
                use[shape][hint] = forced if forced in paths else "packed"
            else:
                use[shape][hint] = _fastest(group, hint, p, paths)
        counts = {path: sum(use[shape][hint] == path for shape in shapes) for path in PATHS}
        counts = {path: k for path, k in sorted(counts.items(), key=lambda kv: -kv[1]) if k}
        only = next(iter(counts))
        mix = ", ".join(f"{path} for {k}" for path, k in counts.items())
        chosen[hint] = only if counts[only] == len(shapes) else f"mixed ({mix} of {len(shapes)} shapes)"
    for m in linears:
        m.__dict__["_kiln_path"] = dict(use[(m.in_features, m.out_features)])
        packs = m.__dict__.get("_kiln_packed", {})
        kept = {pack_hint(h) for h, path in m.__dict__["_kiln_path"].items() if path == "packed"}
        for h in [h for h in packs if h not in kept]:
            packs.pop(h)
    # The linear layers are kept with the plan: `packed_linears` runs once per decode step in a server, and walking
    # gpt2's modules twice a step cost ~0.25 ms of a ~10 ms bf16 step.
    model.__dict__["_kiln_plan"] = (key, chosen, linears)
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


def _fastest(group: list[nn.Linear], hint: int, p: Tensor, paths: tuple[str, ...]) -> str:
    """Which of `paths` runs these layers (one shape) fastest at `hint` rows, timed on their own weights (a tie
    goes to the earlier path)."""
    xs = [torch.randn(hint, m.in_features, dtype=p.dtype, device=p.device) for m in group]
    run = {
        "packed": lambda m, x: _packed_linear(m, x, hint),
        "plain": lambda m, x: F.linear(x, m.weight, m.bias),
        "gemv": gemv.linear,
    }
    calls = {path: (lambda fn=run[path]: [fn(m, x) for m, x in zip(group, xs, strict=True)]) for path in paths}
    best = best_times(calls)
    return min(paths, key=lambda path: best[path])


@functools.cache
def fp32_attention_faster() -> bool:
    """Whether this CPU attends faster in fp32 than in bf16 for one query a row, timed once per process (a few ms):
    a bf16 model then keeps an fp32 KV cache (`gpt.cache_dtype`). On a 2-core Zen 4 EPYC (AVX512-BF16, torch
    2.13.0) PyTorch's bf16 SDPA was 2.5-4x slower than fp32 (gpt2's heads, batch 8 over 96 keys: 497 us against
    139); a CPU whose bf16 attention runs on AMX may differ, hence the measurement rather than a rule."""
    q = torch.randn(8, 12, 1, 64)
    k, v = torch.randn(8, 12, 256, 64), torch.randn(8, 12, 256, 64)
    calls = {}
    for dtype in (torch.bfloat16, torch.float32):
        args = (q.to(dtype), k.to(dtype), v.to(dtype))
        calls[str(dtype)] = lambda args=args: F.scaled_dot_product_attention(*args)
    with torch.inference_mode():
        times = best_times(calls, rounds=5)
    return times[str(torch.float32)] < times[str(torch.bfloat16)]


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
    linears = model.__dict__["_kiln_plan"][2]
    for m in linears:  # an instance attribute shadows the class's forward (set in __dict__: nn.Module's
        m.__dict__["forward"] = _forward.__get__(m)  # __setattr__ checks cost ~1 us a layer, a step)
    try:
        yield
    finally:
        for m in linears:
            m.__dict__.pop("forward", None)


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
        m.__dict__.pop("_kiln_path", None)
