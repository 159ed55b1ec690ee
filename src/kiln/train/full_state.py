"""Full (unsharded) model and optimizer state dicts, keyed by parameter name, for DDP, FSDP2 and one process alike.

Checkpoints hold full states so that any number of processes, sharded or not, can resume from them and so that
`kiln generate` reads a training checkpoint directly. Under FSDP gathering them is a collective: every rank
must call these functions in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kiln.train.state import ResumeError


def full_model_state(raw: nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """The model's full state dict on CPU (rank 0 gets it under FSDP)."""
    if not fsdp:
        return raw.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(raw, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_states(raw: nn.Module, optimizers: list[torch.optim.Optimizer]) -> list[dict[str, Any]]:
    """Each optimizer's full state dict on CPU, keyed by parameter name (rank 0 gets them under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return [get_optimizer_state_dict(raw, opt, options=opts) for opt in optimizers]


def load_optimizer_states(raw: nn.Module, optimizers: list[torch.optim.Optimizer], states: list[dict]) -> None:
    """Load full optimizer state dicts (as `full_optimizer_states` gives them) into this run's optimizers,
    keeping this run's hyperparameters."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if len(states) != len(optimizers):
        raise ResumeError(
            f"the checkpoint has {len(states)} optimizer state(s) but this run builds {len(optimizers)} "
            "(was the optimizer setting changed?)"
        )
    for opt, sd in zip(optimizers, states, strict=True):
        # The saved state brings its hyperparameters along; this run's config wins (a resume may change lr,
        # weight decay, betas ...), so put the fresh group settings back after loading the moments.
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        set_optimizer_state_dict(raw, opt, sd, options=StateDictOptions(full_state_dict=True))
        for group, settings in zip(opt.param_groups, fresh, strict=True):
            group.update(settings)
