"""A `device=` setting as a torch device, or a one-line error naming the setting: asking for a GPU this machine
does not have (`device=cuda` on a CPU-only torch, `mps` off Apple silicon, `cuda:3` on a two-GPU box) would
otherwise fail deep inside torch with an AttributeError or an assertion about a missing driver."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device, param: str = "device") -> torch.device:
    """`name` (auto, cpu, cuda, cuda:N, mps) as a torch.device this machine has; auto = cuda if available, else
    cpu. ValueError naming `param` otherwise."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{param}={name}: not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"{param}={name}: CUDA is not available here ({why}); use {param}=cpu or {param}=auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"{param}={name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{param}={name}: Apple's MPS is not available here; use {param}=cpu or {param}=auto")
    return device
