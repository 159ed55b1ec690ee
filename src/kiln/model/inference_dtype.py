"""The precision a model decodes in: float32 (exact, the default), bfloat16, int8 (weights only, CPU), or auto.

bf16 halves the bytes every decode step streams and, on CPUs that multiply bf16 in hardware (AMX,
AVX512-BF16), decodes gpt2 1.4x (batch 1) to 1.9x (batch 8) faster than fp32 (see cpu_fast). It changes the numbers:
logits move by about bf16's precision (~0.4% of their scale), so a greedy token can flip where the top two
are that close. float32 stays the default so outputs match transformers and earlier runs exactly; "auto"
takes bf16 only where the hardware computes it natively (elsewhere bf16 is emulated and slower than fp32).
int8 stores each linear layer's weight in a quarter of fp32's bytes for CPUs without bf16 hardware, where one
stream's decode is bound by memory bandwidth (kiln.model.int8_weights); it moves logits more than bf16 and is only
ever chosen by name.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kiln.model import cpu_fast, int8_weights

InferenceDtype = Literal["float32", "bfloat16", "int8", "auto"]
CHOICES: tuple[str, ...] = ("float32", "bfloat16", "int8", "auto")


def resolve(choice: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype of the model's parameters for `choice` on `device` (int8: float32, quantised by `prepare`);
    ValueError naming `dtype` for an unknown choice or int8 off the CPU."""
    if choice not in CHOICES:
        raise ValueError(f"dtype: must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"dtype: int8 decodes on a CPU only, not {torch.device(device).type}; use bfloat16 there")
    if choice in ("float32", "int8"):
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if kind == "cpu" and cpu_fast.native_bf16() else torch.float32


def prepare(model: nn.Module, choice: str) -> nn.Module:
    """`model` ready to decode in `choice`: cast to its dtype, and for int8 marked to run its linear layers on int8
    weights (ValueError naming `dtype` where that cannot run)."""
    model = model.to(resolve(choice, next(model.parameters()).device))
    return int8_weights.enable(model) if choice == "int8" else model
