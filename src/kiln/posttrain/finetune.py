"""`FineTuner`: the pretraining `Trainer` starting from a checkpoint rather than a fresh model.

What SFT and DPO share: the model, its shape and its tokenizer come from `cfg.checkpoint` (or, on resume, from
the run's own checkpoint), and the held-out metric is the subclass's, not bits per byte.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kiln.model import GPTConfig
from kiln.model.checkpoint import TOKENIZER_DIR, load_checkpoint, read_config, resolve_checkpoint
from kiln.stage import Summary
from kiln.tokenizer import Tokenizer, load_tokenizer
from kiln.train.trainer import Trainer


class FineTuner(Trainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stats: dict[str, float] = {}  # per micro-batch metrics since the last log line (add_stats)
        super().__init__(*args, **kwargs)

    def source(self) -> tuple[Path, GPTConfig, Tokenizer]:
        """The checkpoint the model comes from, its config and its tokenizer (read in setup_data, before the
        model is built, since the data's windows need the context length)."""
        src = self.resume_from or resolve_checkpoint(self.cfg.checkpoint)
        self._model_cfg, _ = read_config(src)
        if not (src / TOKENIZER_DIR).exists():
            raise ValueError(f"{src} has no tokenizer/: fine-tuning needs the model's tokenizer")
        return src, self._model_cfg, load_tokenizer(src / TOKENIZER_DIR)

    def resolve_model_config(self) -> GPTConfig:
        # The checkpoint's shape, recorded in the run's config so a resume checks against it.
        self.cfg.model = self.run_config.model = self._model_cfg
        return self._model_cfg

    def build_model(self) -> nn.Module:
        if self.resume_from is not None:
            return super().build_model()
        torch.manual_seed(self.cfg.seed)
        model, _, _ = load_checkpoint(self.cfg.checkpoint, device=self.device)
        return model.train()

    def measure_val_bytes(self) -> float:
        return math.nan  # fine-tuning reports its own held-out metrics, not bits per byte

    def work_flops(self, tokens: int, width: int, head_tokens: int) -> float:
        """Training FLOPs of `tokens` real tokens in rows `width` wide whose LM head (6·V·d a token) runs on
        `head_tokens` of them: the fine-tuning stages compute logits only where a target is scored."""
        head = 6 * self.raw.lm_head.weight.numel()
        return tokens * (self.raw.flops_per_token(width) - head) + head_tokens * head

    # ------------------------------------------------------------------------------------------------ logging
    def add_stats(self, count: bool = True, **values: Any) -> None:
        """Per micro-batch metrics; each metrics.jsonl line gets their means since the line before. `count=False`
        adds to the micro-batch an earlier call counted."""
        stats = self._stats
        for key, value in values.items():
            stats[key] = stats.get(key, 0.0) + float(value)
        if count:
            stats["_n"] = stats.get("_n", 0) + 1

    def step_record(self) -> dict[str, float]:
        stats = self._stats
        n = stats.pop("_n", 0)
        out = {k: round(v / max(n, 1), 6) for k, v in stats.items()}
        self._stats = {}
        return out

    def eval_line(self) -> str:
        """The line an evaluation prints (the held-out metrics of the subclass)."""
        raise NotImplementedError

    def on_eval(self) -> None:
        p = self.progress
        p.val_loss = self.evaluate_loss()
        if p.val_loss < p.best_val:
            p.best_val, p.best_step = p.val_loss, p.step
        if self.info.is_main:
            self.bar.write(f"step {p.step}: train {p.train_loss:.4f}  {self.eval_line()}")


@dataclass
class FineTuneSummary(Summary):
    """How a fine-tuning run ended; subclasses add their held-out metric and `report()`."""

    out_dir: str
    steps: int = 0
    train_loss: float = math.nan
    val_loss: float = math.nan
    elapsed_s: float = math.nan
    checkpoint: str | None = None
    interrupted: int | None = None
    """The signal that stopped the run (a checkpoint was saved; resume with --resume out_dir)."""
    is_main: bool = True
    error: str | None = None
    """Why training stopped early (the loss diverged); the last good checkpoint is kept."""

    stage = "sft"

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        if self.interrupted:
            return 128 + int(self.interrupted)
        return 1 if self.error else 0

    def render(self) -> str:
        if not self.is_main or self.interrupted:
            return ""
        if self.error:
            return f"kiln {self.stage}: {self.error}"
        return self.report()

    def report(self) -> str:
        raise NotImplementedError


def run_finetune(trainer: type[FineTuner], summary: type[FineTuneSummary], config: Any) -> Any:
    """Validate, start (torchrun-aware), fit, and report: what every fine-tuning stage's `run` does."""
    from kiln.train import distributed as D
    from kiln.train.trainer import TrainingDiverged

    config.validate()
    info, device = D.init_distributed(config.device)
    try:
        result = trainer(config, info, device, print, config.resume).fit()
    except TrainingDiverged as e:
        # Every rank sees the same all-reduced loss, so every rank stops here; only rank 0 reports.
        is_main = int(os.environ.get("RANK", "0")) == 0
        return summary(out_dir=str(config.out_dir), steps=e.steps, error=str(e), is_main=is_main)
    finally:
        D.shutdown()
    keys = summary.__dataclass_fields__
    return summary(**{k: v for k, v in result.items() if k in keys})
