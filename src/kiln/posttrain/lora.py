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
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

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
    """The model's weights with every adapter folded in (W + peft's delta, as `merge()` adds it), under the names
    of the model without adapters. Computed from the state, not a merged copy of the model: GRPO refreshes its
    sampler with it every step."""
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        deltas = {
            f"{name}.base_layer.weight": sum(m.get_delta_weight(a) for a in m.active_adapters)
            for name, m in model.named_modules()
            if isinstance(m, LoraLayer)
        }
        return {
            k.replace(".base_layer.", "."): (v + deltas[k] if k in deltas else v).detach().contiguous()
            for k, v in model.state_dict().items()
            if "lora_" not in k
        }


def without_adapters(model: nn.Module) -> nn.Module:
    """A copy of the model with its adapter layers replaced by their base layers: kiln's own module, which every
    inference path (the CPU decode path's packed weights included) runs as it is; load `merged_state` into it."""
    from peft.tuners.lora import LoraLayer

    plain = copy.deepcopy(model)
    for parent in list(plain.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                setattr(parent, name, child.get_base_layer())
    return plain.requires_grad_(False)


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


class LoraFineTuning:
    """The model side of LoRA for a fine-tuning Trainer whose config has `LoraOptions` (put before FineTuner in
    the bases): the adapters on the starting checkpoint, merge-on-save, the adapters saved beside the weights."""

    cfg: Any
    device: Any
    resume_from: Path | None
    raw: nn.Module
    params: list[nn.Parameter]
    _model_cfg: Any

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        if not cfg.lora_rank:
            return super().build_model()  # type: ignore[misc]
        from kiln.model.checkpoint import load_checkpoint

        # The frozen base is always the starting checkpoint (a LoRA checkpoint holds merged weights); a resume
        # puts the saved adapters back on it.
        torch.manual_seed(cfg.seed)
        model, _, _ = load_checkpoint(cfg.checkpoint, device=self.device)
        if model.config != self._model_cfg:
            raise ValueError(f"{self.resume_from}: its model config differs from {cfg.checkpoint}'s")
        model = add_lora(model.train(), cfg.lora_rank, cfg.lora_alpha, list(cfg.lora_targets))
        if self.resume_from is not None:
            load_adapter(model, self.resume_from)
        return model

    def checkpoint_model_state(self) -> dict[str, Tensor]:
        if not self.cfg.lora_rank:
            return super().checkpoint_model_state()  # type: ignore[misc]
        return merged_state(self.raw)  # merge-on-save: an ordinary checkpoint for every other stage

    def write_model(self, directory, meta, model_state) -> None:  # type: ignore[no-untyped-def]
        super().write_model(directory, meta, model_state)  # type: ignore[misc]
        if self.cfg.lora_rank:
            save_adapter(self.raw, directory)

    def lora_line(self) -> str:
        """What describe() adds under LoRA."""
        if not self.cfg.lora_rank:
            return ""
        return f"; LoRA rank {self.cfg.lora_rank}: {sum(p.numel() for p in self.params):,} trainable parameters"
