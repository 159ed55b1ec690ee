"""`FineTuner`: the pretraining `Trainer` starting from a checkpoint rather than a fresh model.

What SFT and DPO share: the model, its shape and its tokenizer come from `cfg.checkpoint` (or, on resume, from
the run's own checkpoint), and the held-out metric is the subclass's, not bits per byte.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from kiln.model import GPTConfig
from kiln.model.checkpoint import TOKENIZER_DIR, load_checkpoint, read_config, resolve_checkpoint
from kiln.tokenizer import Tokenizer, load_tokenizer
from kiln.train.trainer import Trainer


class FineTuner(Trainer):
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
