"""`DPOConfig`: preference tuning of a checkpoint on chosen/rejected pairs (a training run in every other way)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.posttrain.sft_config import FineTuneConfig, load_finetune_config
from kiln.utils.checks import require


@dataclass
class DPOConfig(FineTuneConfig):
    """Direct preference optimisation (or IPO, SimPO) of a checkpoint on preference pairs."""

    out_dir: Path = Path("runs/dpo")
    """The run directory: checkpoints, metrics.jsonl, kiln-dpo.toml."""
    loss: Literal["sigmoid", "ipo", "simpo"] = "sigmoid"
    """sigmoid = DPO (Rafailov et al. 2023); ipo (Azar et al. 2023); simpo = reference-free SimPO (Meng et al. 2024)."""
    beta: float = 0.1
    """How far from the reference the policy may move (DPO's beta; SimPO's reward scale)."""
    simpo_gamma: float = 0.5
    """SimPO's target reward margin."""
    reference: Literal["precomputed", "live"] = "precomputed"
    """precomputed: the reference's log-probs in one pass before training (no second model in memory);
    live: a frozen copy of the starting model scores every batch (the same numbers, more memory)."""
    share_prompt: bool = True
    """Run each pair's prompt through the model once, its two replies after it in the same row (prefix sharing:
    the same log-probs, less compute); false = chosen and rejected as two full rows, as TRL batches them."""
    sft_weight: float = 0.0
    """Add this times the chosen replies' mean token NLL (an SFT term on chosen, as RPO does); 0 = off."""
    batch_size: int = 4
    """Pairs per micro-batch (each pair is two sequences)."""
    max_steps: int = 100
    """Optimizer steps."""
    lr: float = 5e-5
    """Peak learning rate (preference tuning moves a model little; DPO papers use 5e-7 for 7B models)."""
    warmup_steps: int = 5
    """Linear warmup steps."""
    eval_interval: int = 25
    """Steps between evaluations of held-out preference accuracy and loss."""
    eval_batches: int = 50
    """Most held-out batches per evaluation."""
    val_fraction: float = 0.1
    """Share of pairs held out (at least one)."""
    loss_spike_factor: float = 0.0
    """Off by default: the DPO loss starts at log 2 and falls, spikes relative to its average are normal."""

    def validate(self) -> DPOConfig:
        require(self.beta > 0, f"beta must be > 0, got {self.beta}")
        require(self.sft_weight >= 0, f"sft_weight must be >= 0, got {self.sft_weight}")
        require(self.loss in ("sigmoid", "ipo", "simpo"), f"loss must be sigmoid, ipo or simpo, got {self.loss!r}")
        require(
            self.reference in ("precomputed", "live"), f"reference must be precomputed or live, got {self.reference!r}"
        )
        super().validate()
        return self


def load_dpo_config(path: str | Path | None, overrides: Sequence[str] = ()) -> DPOConfig:
    return load_finetune_config(DPOConfig, path, overrides)
