"""What the training loop counts: how far the run is (`Progress`, saved with every checkpoint), what one step
reports (`StepResult`), and how fast it goes (`Throughput`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor


@dataclass
class Progress:
    """How far the run is: the counters the loop carries from step to step. All but train_loss are saved."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    """Training wall-clock seconds over all sessions of the run (max_minutes counts them)."""
    best_val: float = math.inf
    best_step: int | None = None
    val_loss: float = math.nan
    val_bpb: float = math.nan
    loss_ema: float | None = None
    """Running average of the training loss after warmup, which loss spikes are measured against."""
    train_loss: float = math.nan
    """The last step's; not saved, since the next step computes its own."""

    SAVED: ClassVar[tuple[str, ...]] = (
        "step",
        "tokens",
        "elapsed",
        "best_val",
        "best_step",
        "val_loss",
        "val_bpb",
        "loss_ema",
    )

    def state_dict(self) -> dict[str, Any]:
        state = {key: getattr(self, key) for key in self.SAVED}
        state["best_val"] = None if math.isinf(self.best_val) else self.best_val  # JSON has no infinity
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self.SAVED:
            if key in state:  # checkpoints of older versions lack some counters: keep the defaults
                setattr(self, key, math.inf if state[key] is None and key == "best_val" else state[key])


@dataclass
class StepResult:
    """What one optimizer step reports to the loop."""

    loss: float
    """Training loss averaged over micro-steps and processes."""
    grad_norm: Tensor
    """The global gradient norm before clipping; a tensor, so it is read (a device sync) only when logged."""
    stop: bool
    """Some process caught SIGINT/SIGTERM: save and stop after this step."""
    tokens: int
    """The tokens the step ran through the model, summed over micro-steps and processes (`batch_work`)."""
    flops: float
    """The model FLOPs of those tokens (for MFU), summed the same way."""


class Throughput:
    """Tokens per second over training steps only (evaluation and checkpoints excluded): for the whole run (warm
    steps only), and over the window since the last metrics line."""

    def __init__(self) -> None:
        self._run = [0, 0.0]
        self._window = [0, 0.0]
        self._window_flops = 0.0

    def add(self, tokens: int, seconds: float, warm: bool, flops: float = 0.0) -> None:
        if warm:
            self._run = [self._run[0] + tokens, self._run[1] + seconds]
        self._window = [self._window[0] + tokens, self._window[1] + seconds]
        self._window_flops += flops

    def rate(self) -> float:
        """The run's tokens/s so far (NaN before a warm step)."""
        return self._run[0] / self._run[1] if self._run[1] else math.nan

    def window_rate(self) -> float:
        return self._window[0] / max(self._window[1], 1e-9)

    def window_flop_rate(self) -> float:
        """Model FLOPs per second over the window (MFU's numerator)."""
        return self._window_flops / max(self._window[1], 1e-9)

    def new_window(self) -> None:
        self._window = [0, 0.0]
        self._window_flops = 0.0
