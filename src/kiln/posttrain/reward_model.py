"""A reward model: kiln's transformer with a scalar head instead of (beside) the LM head.

The reward of a reply is the head's value at the reply's closing <|im_end|> token, the position that has read the
whole prompt and reply (as TRL's reward models score the last token). It is a `GPT` subclass, so the trainer,
checkpoints and every parallelism work unchanged; its checkpoint holds one more tensor, `score.weight`, which is
how `load_reward_model` tells it apart.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import WEIGHTS, CheckpointError, load_checkpoint, read_config, resolve_checkpoint


class RewardModel(GPT):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        # Zero: every reply starts at reward 0, so the first Bradley-Terry loss is exactly log 2.
        self.score = nn.Linear(config.n_embd, 1, bias=False)
        nn.init.zeros_(self.score.weight)

    def forward(self, idx: Tensor, targets: Tensor | None = None, *, reward_at: Tensor | None = None, **kw):  # type: ignore[override]
        """With `reward_at` (B,): the (B,) rewards at those positions of each row (through forward, so DDP/FSDP
        wrappers and torch.compile see an ordinary call); with `branches=` too (rows that hold a prompt once and
        several replies after it), `reward_at` is (N,) indices into the flattened B * T positions and N rewards
        come back. Otherwise the language model's forward."""
        if reward_at is None:
            return super().forward(idx, targets, **kw)
        branches = kw.pop("branches", None)
        hidden, _ = super().forward(idx, return_hidden=True, branches=branches)
        if branches is not None:
            picked = hidden.reshape(-1, hidden.shape[-1])[reward_at]
        else:
            picked = hidden[torch.arange(idx.shape[0], device=idx.device), reward_at]
        return self.score(picked.to(self.score.weight.dtype)).squeeze(-1).float()


def from_language_model(directory: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """A reward model whose transformer is a trained checkpoint's (the head starts at zero)."""
    lm, _, _ = load_checkpoint(directory, device=device)
    with torch.device(device):
        model = RewardModel(lm.config)
    missing, unexpected = model.load_state_dict(lm.state_dict(), strict=False)
    assert missing == ["score.weight"] and not unexpected, (missing, unexpected)
    return model


def load_reward_model(directory: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """A reward model checkpoint written by `kiln reward` (strictly: every tensor, score.weight included)."""
    directory = resolve_checkpoint(directory)
    cfg, _ = read_config(directory)
    state = load_file(str(directory / WEIGHTS), device=str(device))
    if "score.weight" not in state:
        raise CheckpointError(f"{directory} is a language model, not a reward model (no score.weight)")
    with torch.device(device):
        model = RewardModel(cfg)
    if cfg.tie_embeddings:
        state.setdefault("lm_head.weight", state.get("wte.weight"))
        state.setdefault("wte.weight", state.get("lm_head.weight"))
    model.load_state_dict(state, strict=True)
    return model.eval()
