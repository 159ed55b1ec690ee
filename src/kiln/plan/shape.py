"""The model a plan sizes: a preset, a depth, or the depth whose size is closest to a law's optimum."""

from __future__ import annotations

import math
from dataclasses import replace

from kiln.model import GPTConfig
from kiln.plan.depth import BATCH_TOKENS, depth_shape
from kiln.plan.memory import ModelCounts

DEPTH_SEQ_LEN = 2048
"""Context of depth-derived models (nanochat's --max-seq-len)."""


def shape_for(*, preset: str | None, depth: int | None, vocab_size: int, seq_len: int | None,
              target_params: float | None) -> tuple[str, GPTConfig, int | None, dict]:  # fmt: skip
    """(label, model config, depth or None, depth-rule hyperparameters). With neither preset nor depth, the depth
    whose exact parameter count (kiln.model on the meta device) is closest to `target_params` in log space."""
    from kiln.model.presets import preset as get_preset

    if preset is not None:
        cfg = get_preset(preset)
        if seq_len is not None:
            cfg = replace(cfg, block_size=seq_len)
        return preset, cfg, None, {}
    block = seq_len or DEPTH_SEQ_LEN
    if depth is None:
        if target_params is None:
            raise ValueError("need a preset, a depth or a budget to size a model")
        depth = _closest_depth(target_params, vocab_size, block)
    s = depth_shape(depth, vocab_size=vocab_size, block_size=block)
    rule = {"lr": s.lr, "muon_lr": s.muon_lr, "batch_tokens": s.batch_tokens}
    return f"depth {depth}", s.model, depth, rule


def _params(depth: int, vocab_size: int, block: int) -> int:
    return ModelCounts.of(depth_shape(depth, vocab_size=vocab_size, block_size=block).model).params


def _closest_depth(target: float, vocab_size: int, block: int) -> int:
    """Bisect on depth (parameters grow monotonically with it) with exact counts, from a bracket around the
    estimate 12·depth·width² (width = 64·depth)."""
    guess = max(1, round((target / (12 * 64**2)) ** (1 / 3)))
    lo, hi = max(1, guess // 2), 2 * guess + 2
    while lo > 1 and _params(lo, vocab_size, block) > target:
        lo //= 2
    while _params(hi, vocab_size, block) <= target:
        hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _params(mid, vocab_size, block) <= target:
            lo = mid
        else:
            hi = mid
    below, above = _params(lo, vocab_size, block), _params(hi, vocab_size, block)
    if below > target:
        return lo
    return lo if abs(math.log(target / below)) <= abs(math.log(above / target)) else hi


__all__ = ["BATCH_TOKENS", "shape_for"]
