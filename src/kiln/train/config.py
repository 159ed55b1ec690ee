"""`TrainConfig`: everything a training run needs, as one typed dataclass (TOML file + key=value overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kiln.model import GPTConfig, preset
from kiln.utils.checks import require


@dataclass
class TrainConfig:
    """A pretraining run. The defaults train a char-level Tiny Shakespeare model in a few CPU minutes."""

    data: str = "shakespeare"
    """A UTF-8 text file, or "shakespeare" for the bundled Tiny Shakespeare."""
    out_dir: Path = Path("runs/shakespeare-char")
    preset: str = "char-cpu"
    """The model preset; `model.<field>=...` overrides any of its fields."""
    model: GPTConfig = field(default_factory=lambda: preset("char-cpu"))
    batch_size: int = 32
    max_steps: int = 2000
    max_minutes: float | None = None
    """Stop after this much wall-clock time (checked every step), whatever max_steps says."""
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    val_fraction: float = 0.1
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None
    """CPU threads for torch (None = torch's default, one per core)."""
    sample_tokens: int = 300
    """Characters of sample text printed at the end (0 = none)."""

    def validate(self) -> TrainConfig:
        for name in ("batch_size", "max_steps", "eval_interval", "eval_batches"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        require(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.max_minutes is not None:
            require(self.max_minutes > 0, f"max_minutes must be > 0, got {self.max_minutes}")
        self.model.validate()
        return self
