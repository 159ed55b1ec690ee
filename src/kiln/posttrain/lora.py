"""LoRA through `peft` on kiln's own model, merged on save.

`peft.inject_adapter_in_model` puts low-rank adapters (Hu et al. 2021: W + (alpha/r) B A, B starting at zero)
into kiln's Linear layers in place, so the Trainer, its optimizer and checkpoints see an ordinary module whose only
trainable parameters are the adapters. A checkpoint stores the *merged* weights under kiln's own names
(`model.safetensors`: generate, serve, export and eval load it as any model) and the adapters beside them
(`adapter.safetensors`), from which a resumed run rebuilds the exact state: the frozen base from the starting
checkpoint plus the saved adapters.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ADAPTER = "adapter.safetensors"


def add_lora(model: nn.Module, rank: int, alpha: float, targets: list[str], dropout: float = 0.0) -> nn.Module:
    """Adapters on the Linear layers whose name ends with one of `targets`; everything else frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout, bias="none")
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if "lora_" in k}


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with every adapter folded in, under the names of the model without adapters."""
    from peft.tuners.lora import LoraLayer

    plain = copy.deepcopy(model)
    for parent in list(plain.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())
    return {k: v.detach().contiguous() for k, v in plain.state_dict().items()}


def save_adapter(model: nn.Module, directory: Path) -> None:
    save_file(adapter_state(model), str(directory / ADAPTER))


def load_adapter(model: nn.Module, directory: Path) -> None:
    path = directory / ADAPTER
    if not path.is_file():
        raise ValueError(f"{directory} has no {ADAPTER}: it was not saved by a LoRA run")
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    lora_missing = [k for k in missing if "lora_" in k]
    if lora_missing or unexpected:
        raise ValueError(f"{path} does not fit this run's adapters ({(lora_missing or unexpected)[:3]})")
