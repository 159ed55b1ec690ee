"""Validation loss over a fixed set of batches, split across processes."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kiln.train import distributed as D
from kiln.train.precision import autocast


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    info: D.Dist,
    device: torch.device,
    precision: str,
    fsdp: bool,
) -> float:
    """Mean loss over the fixed val batches, split across ranks (FSDP ranks run equally many forwards,
    since each forward is a collective)."""
    model.eval()
    mine = batches[info.rank :: info.world_size]
    rounds = math.ceil(len(batches) / info.world_size) if fsdp else len(mine)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for i in range(rounds):
        x, y = mine[i] if i < len(mine) else batches[0]
        with autocast(precision, device):
            _, loss = model(x.to(device), y.to(device))
        if i < len(mine):
            total[0] += loss.float()
            total[1] += 1
    D.all_reduce_sum(total, info)
    model.train()
    return float(total[0] / total[1])
