"""`kiln train` as a stage: `run(TrainConfig) -> TrainSummary` (see `kiln.stage` for the contract).

The resolved config lands beside the run as `<out_dir>/kiln-train.toml` (the trainer's rank 0 writes it once the
run directory is claimed, or a resume has loaded), without `resume`, so `kiln train <out_dir>/kiln-train.toml`
repeats the run from scratch and never resumes by accident.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from kiln.stage import Summary
from kiln.train.config import TrainConfig
from kiln.train.trainer import TrainingDiverged, train


@dataclass
class TrainSummary(Summary):
    """How a training run ended. A diverged run has `error` set; one stopped by a signal has `interrupted`."""

    out_dir: str
    steps: int = 0
    tokens: int = 0
    train_loss: float = math.nan
    val_loss: float = math.nan
    best_val_loss: float = math.nan
    val_bpb: float = math.nan
    tokens_per_s: float = math.nan
    elapsed_s: float = math.nan
    checkpoint: str | None = None
    precision: str = ""
    interrupted: int | None = None
    """The signal number that stopped the run (a checkpoint was saved; resume it with resume=out_dir)."""
    sample: str = ""
    is_main: bool = True
    """False on every torchrun process but rank 0, which alone reports."""
    error: str | None = None
    """Why training stopped early (the loss diverged); the last good checkpoint is kept."""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """128 + the signal (as a shell reports a process a signal ended), 1 after divergence, else 0."""
        if self.interrupted:
            return 128 + int(self.interrupted)
        return 1 if self.error else 0

    def render(self) -> str:
        """What `kiln train` prints at the end: the val loss and where the checkpoints are, or why it stopped.
        Nothing on ranks other than 0, nor after a signal (the trainer has said how to resume). A diverged run's
        line belongs on stderr (`exit_code` 1)."""
        if not self.is_main or self.interrupted:
            return ""
        if self.error:
            return f"kiln train: {self.error}"
        lines = [
            f"\nval loss {self.val_loss:.4f} ({self.val_bpb:.3f} bits/byte) after {self.steps} steps",
            f"checkpoints: {self.out_dir}   (try: kiln generate --checkpoint {self.out_dir})",
        ]
        if self.sample:
            lines.append("\nsample:\n" + self.sample)
        return "\n".join(lines)


def run(config: TrainConfig) -> TrainSummary:
    """Train (or, with `config.resume`, continue) the run `config` describes; see `kiln.train.trainer.Trainer`."""
    try:
        return TrainSummary(**train(config))
    except TrainingDiverged as e:
        # Every rank sees the same all-reduced loss, so every rank stops here; only rank 0 reports.
        is_main = int(os.environ.get("RANK", "0")) == 0
        return TrainSummary(out_dir=str(config.out_dir), steps=e.steps, error=str(e), is_main=is_main)
