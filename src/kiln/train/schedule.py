"""Learning-rate schedules, as a multiplier of each parameter group's peak rate.

Warmup keeps the first updates small while the optimizer's moment estimates are still noise. After it:
- cosine decays to `min_ratio` x the peak (a floor rather than zero, so the last steps still learn);
- wsd (warmup-stable-decay, as in MiniCPM and nanochat) holds the peak, then decays linearly to
  `min_ratio` over the last `decay_fraction` of the run: the stable phase can be extended or branched
  from any checkpoint, and the short decay recovers what cosine's long tail gives;
- constant stays at the peak.
"""

from __future__ import annotations

import math


def cosine_lr(step: int, progress: float, *, peak: float, warmup: int, min_ratio: float) -> float:
    """The learning rate at `step`, where `progress` in [0, 1] is how far the run is (by steps, or by
    wall-clock time for a run with a time budget, so a time-boxed run still anneals before it stops)."""
    return peak * lr_multiplier("cosine", step, progress, warmup=warmup, min_ratio=min_ratio)


def lr_multiplier(
    kind: str, step: int, progress: float, *, warmup: int, min_ratio: float, decay_fraction: float = 0.2
) -> float:
    """The schedule's factor in [0, 1] at `step`; `progress` is the run's fraction done (by steps or time)."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    if kind == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    if kind == "wsd":
        start = 1.0 - decay_fraction
        if p <= start:
            return 1.0
        return 1.0 - (1.0 - min_ratio) * (p - start) / decay_fraction
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {kind!r}; choose cosine, wsd or constant")
