"""Helpers shared by the model tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import torch

POS_ENCODINGS = ["learned", "sinusoidal", "rope", "alibi", "none"]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-9) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0)


def all_logits(model, idx, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(idx, all_logits=True, **kw)[0]
