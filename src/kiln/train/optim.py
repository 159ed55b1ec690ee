"""Which parameters go to which optimizer, with which weight decay.

- AdamW decays matrices only: decaying norm gains and biases pulls them toward zero for no regularising
  benefit (the GPT-2 / nanoGPT convention). It is fused (one kernel for all parameters) where torch has
  a fused kernel for the device and the parameters are plain tensors. With optimizer_state_dtype="bfloat16" it is
  `AdamWBF16States` (the same update, its moments in half the memory).
- With optimizer="muon", the 2-D weights inside the transformer blocks go to Muon; embeddings, the LM head
  (a classifier, not a hidden transform), norms and biases stay on AdamW, as modded-nanogpt and nanochat do.

Every group records its peak rate as "peak_lr", so the schedule sets lr = peak_lr x multiplier.
"""

from __future__ import annotations

import torch
from torch import nn

from kiln.train.adamw_bf16 import AdamWBF16States
from kiln.train.config import TrainConfig
from kiln.train.muon import Muon


def _is_plain(p: torch.Tensor) -> bool:
    return type(p) in (torch.Tensor, nn.Parameter)


def build_optimizers(model: nn.Module, cfg: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """One optimizer (AdamW) or two (Muon for hidden matrices + AdamW for the rest), in a fixed order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    use_muon = cfg.optimizer == "muon"
    muon_params = [p for n, p in named if use_muon and p.dim() == 2 and n.startswith("blocks.")]
    muon_ids = {id(p) for p in muon_params}
    rest = [(n, p) for n, p in named if id(p) not in muon_ids]
    groups = [
        {"params": [p for _, p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay, "peak_lr": cfg.lr},
        {"params": [p for _, p in rest if p.dim() < 2], "weight_decay": 0.0, "peak_lr": cfg.lr},
    ]
    groups = [g for g in groups if g["params"]]
    fused = device.type in ("cuda", "cpu") and all(_is_plain(p) for _, p in rest)
    adamw: torch.optim.Optimizer
    if cfg.optimizer_state_dtype == "bfloat16":
        adamw = AdamWBF16States(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    else:
        adamw = torch.optim.AdamW(
            groups,
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            fused=True if fused else None,
        )
    optimizers: list[torch.optim.Optimizer] = [adamw]
    if muon_params:
        muon = Muon(muon_params, lr=cfg.muon_lr, momentum=cfg.muon_momentum, weight_decay=cfg.muon_weight_decay)
        for g in muon.param_groups:
            g["peak_lr"] = cfg.muon_lr
        optimizers.insert(0, muon)
    return optimizers


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * multiplier
