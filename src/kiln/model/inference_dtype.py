"""The precision a model decodes in: float32 (exact, the default), bfloat16, or auto.

bf16 halves the bytes every decode step streams and, on CPUs that multiply bf16 in hardware (AMX,
AVX512-BF16), decodes gpt2 1.4x (batch 1) to 1.9x (batch 8) faster than fp32 (see cpu_fast). It changes the numbers:
logits move by about bf16's precision (~0.4% of their scale), so a greedy token can flip where the top two
are that close. float32 stays the default so outputs match transformers and earlier runs exactly; "auto"
takes bf16 only where the hardware computes it natively (elsewhere bf16 is emulated and slower than fp32).
"""

from __future__ import annotations

from typing import Literal

import torch

from kiln.model import cpu_fast

InferenceDtype = Literal["float32", "bfloat16", "auto"]
CHOICES: tuple[str, ...] = ("float32", "bfloat16", "auto")


def resolve(choice: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype for `choice` on `device` (ValueError naming `dtype` for an unknown choice)."""
    if choice not in CHOICES:
        raise ValueError(f"dtype: must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if kind == "cpu" and cpu_fast.native_bf16() else torch.float32
