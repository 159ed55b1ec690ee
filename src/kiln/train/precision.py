"""Mixed precision: pick a compute dtype that fits the device, and the autocast context and loss scaler for it.

Weights, gradients and optimizer states stay fp32 ("master weights"); autocast runs matmuls in bf16/fp16.
bf16 has fp32's exponent range, so it needs no loss scaling; fp16 (for GPUs without bf16) underflows small
gradients unless the loss is scaled up first, which GradScaler does and undoes.

On CPU, "auto" means fp32 unless the CPU has AMX tiles (Sapphire Rapids and later): without them, bf16
autocast buys nothing even where AVX512-BF16 speeds up matmuls, because everything around the matmuls
(casts, softmax, norms) gets slower. Measured on a 2-core AVX512-BF16 EPYC: on 2026-11-23 a char-level model
trained several times slower under bf16 autocast than in fp32; on 2026-12-06 (Zen 4, torch 2.13.0) the Tiny
Shakespeare recipe ran at the same speed either way (140 s: 346 steps, val 1.649 in
bf16; 352 and 364 steps, 1.660 and 1.646 in fp32), so fp32, which is exact, stays the default there.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_amx() -> bool:
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def resolve_precision(requested: str, device: torch.device) -> str:
    """'auto' -> the fastest safe choice for the device; an explicit choice is checked against it."""
    if device.type == "cuda":
        if requested == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested
    if requested == "fp16":
        raise ValueError("precision fp16 needs a CUDA GPU (loss scaling on CPU is not supported); use bf16 or fp32")
    if requested == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_amx() else "fp32"
    return requested


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A scaler that is active only for fp16 (a disabled one is a no-op, so the loop has one code path)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
