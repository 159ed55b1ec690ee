"""Learning-rate schedule: linear warmup, then cosine decay to min_lr_ratio × the peak."""

from __future__ import annotations

import math


def cosine_lr(step: int, progress: float, *, peak: float, warmup: int, min_ratio: float) -> float:
    """The learning rate at `step`, where `progress` in [0, 1] is how far the run is (by steps, or by
    wall-clock time for a run with a time budget, so a time-boxed run still anneals before it stops).

    Warmup keeps the first updates small while Adam's moment estimates are still noise; the cosine tail
    anneals to a floor rather than zero so the last steps still learn.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
