"""`kiln dpo CHECKPOINT PAIRS...` as a stage: `run(DPOConfig) -> DPOSummary`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from kiln.posttrain.dpo_config import DPOConfig
from kiln.stage import Summary


@dataclass
class DPOSummary(Summary):
    """How a preference-tuning run ended."""

    out_dir: str
    steps: int = 0
    train_loss: float = math.nan
    val_loss: float = math.nan
    """Held-out preference loss."""
    best_val_loss: float = math.nan
    val_pref_acc: float | None = None
    """Held-out share of pairs whose chosen reply gets the higher implicit reward."""
    pairs: int = 0
    elapsed_s: float = math.nan
    checkpoint: str | None = None
    interrupted: int | None = None
    is_main: bool = True
    error: str | None = None

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        if self.interrupted:
            return 128 + int(self.interrupted)
        return 1 if self.error else 0

    def render(self) -> str:
        if not self.is_main or self.interrupted:
            return ""
        if self.error:
            return f"kiln dpo: {self.error}"
        acc = self.val_pref_acc or 0.0
        return (
            f"\nheld-out preference accuracy {acc:.3f}, loss {self.val_loss:.4f} after {self.steps} steps on "
            f"{self.pairs:,} pairs\ncheckpoints: {self.out_dir}   (chat with it: kiln serve --models {self.out_dir})"
        )


def run(config: DPOConfig) -> DPOSummary:
    from kiln.posttrain.dpo_trainer import DPOTrainer
    from kiln.train import distributed as D
    from kiln.train.trainer import TrainingDiverged

    config.validate()
    info, device = D.init_distributed(config.device)
    try:
        result = DPOTrainer(config, info, device, print, config.resume).fit()
    except TrainingDiverged as e:
        is_main = int(os.environ.get("RANK", "0")) == 0
        return DPOSummary(out_dir=str(config.out_dir), steps=e.steps, error=str(e), is_main=is_main)
    finally:
        D.shutdown()
    keys = DPOSummary.__dataclass_fields__
    return DPOSummary(**{k: v for k, v in result.items() if k in keys})
