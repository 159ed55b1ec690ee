"""Mixed precision: pick a compute dtype that fits the device, and the autocast context and loss scaler for it.

Weights, gradients and optimizer states stay fp32 ("master weights"); autocast runs matmuls in bf16/fp16.
bf16 has fp32's exponent range, so it needs no loss scaling; fp16 (for GPUs without bf16) underflows small
gradients unless the loss is scaled up first, which GradScaler does and undoes.

On CPU, "auto" means bf16 where the CPU has AMX tiles (Sapphire Rapids and later), fp32 where it cannot multiply
bf16 in hardware, and a measurement in between, on CPUs with AVX512-BF16 but no AMX (Zen 4): there bf16 autocast
halves the matmuls' work but slows everything around them (casts, softmax, norms), so which wins depends on the
model and the batch. Measured on a 2-core Zen 4 EPYC (torch 2.13.0): the Tiny Shakespeare recipe (a 6 x 128
char model, batch 32 x 128) ran at the same speed either way (2026-12-06, 140 s: 346 steps in bf16, 352 and 364 in
fp32); the GRPO update of a 256-wide quickstart model (128 rows x 77 tokens) took 2.1 s a step in bf16 against
3.1 s in fp32, and GRPO ran 128-137 steps in 10 minutes against 84-94 (2026-12-07). So the trainer times a forward
and backward of its own model both ways (`time_precisions`) and keeps bf16 only where it is clearly faster
(`BF16_MARGIN`): fp32 is exact, so a tie goes to it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
from torch import nn

from kiln.model.cpu_fast import best_times, native_bf16

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

BF16_MARGIN = 1.3
"""How much faster a timed bf16 forward and backward must be for "auto" to pick it over fp32 on a CPU without AMX.
The timing leaves out the optimizer and the data, which cost the same in both, so it overstates the whole step's
gain: the Tiny Shakespeare recipe's model timed 1.20-1.24x faster in bf16 on the Zen 4 whose whole steps ran at the
same speed either way. And bf16 rounds every product where fp32 does not, and a choice that flipped on noise
between two runs of one job would make them differ: near-ties stay fp32."""


def cpu_has_amx() -> bool:
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def resolve_precision(requested: str, device: torch.device, measure: Callable[[], str] | None = None) -> str:
    """'auto' -> the fastest safe choice for the device; an explicit choice is checked against it. `measure`
    decides "auto" on a CPU with AVX512-BF16 but no AMX (it returns "bf16" or "fp32"); without it that CPU gets
    fp32."""
    if device.type == "cuda":
        if requested == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested
    if requested == "fp16":
        raise ValueError("precision fp16 needs a CUDA GPU (loss scaling on CPU is not supported); use bf16 or fp32")
    if requested == "auto":
        if device.type != "cpu":
            return "fp32"
        if cpu_has_amx():
            return "bf16"
        return measure() if measure is not None and native_bf16() else "fp32"
    return requested


def time_precisions(step: Callable[[str], object], rounds: int = 2, min_seconds: float = 0.5) -> dict[str, float]:
    """Seconds of `step(precision)` in fp32 and in bf16: a warm-up round (oneDNN builds its kernels for a new shape
    on the first call), then the best of `rounds - 1` more each, or of more while the rounds so far took under
    `min_seconds` (50 rounds in all at most), the two interleaved (`cpu_fast.best_times`)."""
    calls = {precision: functools.partial(step, precision) for precision in ("fp32", "bf16")}
    return best_times(calls, rounds=rounds - 1, min_seconds=min_seconds)


def time_training_step(model: nn.Module, rows: int, width: int, device: torch.device) -> dict[str, float]:
    """`time_precisions` of a forward and backward of `model` on `rows` x `width` random tokens; the global RNG (the
    model's dropout draws from it) and the gradients are left as they were, so the run that follows is the one it
    would have been without the timing."""
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(vocab, (rows, width), generator=g).to(device)
    y = torch.randint(vocab, (rows, width), generator=g).to(device)

    def step(precision: str) -> None:
        with autocast(precision, device):
            _, loss = model(x, y)
        loss.backward()

    with torch.random.fork_rng(devices=[]):
        seconds = time_precisions(step)
    model.zero_grad(set_to_none=True)
    return seconds


def faster_precision(seconds: dict[str, float]) -> str:
    """bf16 where its step is at least BF16_MARGIN times faster than fp32's, else fp32."""
    return "bf16" if seconds["fp32"] >= BF16_MARGIN * seconds["bf16"] else "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A scaler that is active only for fp16 (a disabled one is a no-op, so the loop has one code path)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
