"""`kiln dpo CHECKPOINT PAIRS...` as a stage: `run(DPOConfig) -> DPOSummary`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kiln.posttrain.dpo_config import DPOConfig
from kiln.posttrain.finetune import FineTuneSummary, run_finetune


@dataclass
class DPOSummary(FineTuneSummary):
    """How a preference-tuning run ended."""

    best_val_loss: float = math.nan
    val_pref_acc: float | None = None
    """Held-out share of pairs whose chosen reply gets the higher implicit reward; val_loss is their loss."""
    pairs: int = 0

    stage = "dpo"

    def report(self) -> str:
        acc = self.val_pref_acc or 0.0
        return (
            f"\nheld-out preference accuracy {acc:.3f}, loss {self.val_loss:.4f} after {self.steps} steps on "
            f"{self.pairs:,} pairs\ncheckpoints: {self.out_dir}   (chat with it: kiln serve --models {self.out_dir})"
        )


def run(config: DPOConfig) -> DPOSummary:
    from kiln.posttrain.dpo_trainer import DPOTrainer

    return run_finetune(DPOTrainer, DPOSummary, config)
