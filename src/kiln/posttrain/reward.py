"""`kiln reward CHECKPOINT PAIRS...`: a Bradley-Terry reward model trained on preference pairs.

The loss is -log sigmoid(r_chosen - r_rejected) (Bradley & Terry 1952; as in InstructGPT and TRL's RewardTrainer);
held-out pairwise accuracy is the share of pairs whose chosen reply scores higher. The result scores any reply
(`score_replies`), for RL and for people comparing replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.posttrain.dpo_data import DPOData, PairLoader, evaluate_pairs, pair_work, prepare_dpo_data
from kiln.posttrain.finetune import FineTuner, FineTuneSummary, run_finetune
from kiln.posttrain.packing import IGNORE
from kiln.posttrain.sft_config import FineTuneConfig, load_finetune_config
from kiln.posttrain.shared_prompt import share_prompts
from kiln.train.precision import autocast


@dataclass
class RewardConfig(FineTuneConfig):
    """A reward model (a scalar head on a checkpoint's transformer) trained on chosen/rejected pairs."""

    out_dir: Path = Path("runs/reward")
    """The run directory: checkpoints, metrics.jsonl, kiln-reward.toml."""
    batch_size: int = 4
    """Pairs per micro-batch."""
    max_steps: int = 100
    """Optimizer steps."""
    lr: float = 1e-4
    """Peak learning rate."""
    share_prompt: bool = True
    """Run each pair's prompt through the model once, both replies after it in one row (as `kiln dpo` does; the
    same rewards, less compute: on multi-turn pairs like HH-RLHF the prompt is most of the tokens)."""
    warmup_steps: int = 5
    """Linear warmup steps."""
    eval_interval: int = 25
    """Steps between evaluations of held-out pairwise accuracy."""
    eval_batches: int = 50
    """Most held-out batches per evaluation."""
    val_fraction: float = 0.1
    """Share of pairs held out (at least one)."""
    loss_spike_factor: float = 0.0
    """Off by default (the loss starts at log 2 and falls)."""


def load_reward_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RewardConfig:
    return load_finetune_config(RewardConfig, path, overrides)


def reward_positions(y: Tensor) -> Tensor:
    """(B,) where each row's reward is read: the closing <|im_end|> (the token after the last trained target)."""
    t = y.shape[1]
    idx = torch.arange(t, device=y.device).expand_as(y)
    last = torch.where(y != IGNORE, idx, -1).max(dim=1).values
    return (last + 1).clamp(max=t - 1)


class RewardTrainer(FineTuner):
    stage_name = "reward"
    cfg: RewardConfig

    def setup_data(self) -> DPOData:
        cfg = self.cfg
        source, model_cfg, tok = self.source()
        return prepare_dpo_data(
            tok, cfg.inputs, model_cfg.block_size, val_fraction=cfg.val_fraction, overlong=cfg.overlong,
            max_examples=cfg.max_examples, where=str(cfg.checkpoint or source),
        )  # fmt: skip

    def build_model(self) -> nn.Module:
        from kiln.posttrain.reward_model import from_language_model, load_reward_model

        torch.manual_seed(self.cfg.seed)
        if self.resume_from is not None:
            return load_reward_model(self.resume_from, device=self.device).train()
        return from_language_model(self.cfg.checkpoint, device=self.device).train()

    def build_loader(self) -> PairLoader:
        cfg, info = self.cfg, self.info
        # One column past the last target: the reward is read at the closing token itself.
        return PairLoader(self.shards.train, cfg.batch_size, cfg.seed, info.rank, info.world_size, extra=1)

    def build_val_batches(self) -> list[Any]:
        n, b = len(self.shards.val), self.cfg.batch_size
        batches = [np.arange(i, min(n, i + b)) for i in range(0, n, b)]
        self.n_val = min(len(batches), self.cfg.eval_batches)
        return batches[: self.n_val]

    def describe(self) -> str:
        d: DPOData = self.shards
        return (
            f"reward model: {self.raw.num_params():,} parameters from {self.cfg.checkpoint}, context {self.block}; "
            f"{len(d.train):,} train pairs, {len(d.val)} held out; device {self.device}, "
            f"{self.precision}{self.precision_note}"
        )

    def next_batch(self) -> tuple[Tensor, ...]:  # type: ignore[override]
        return tuple(t.to(self.device, non_blocking=True) for t in self.loader.next_batch())

    def batch_work(self, batch: tuple[Tensor, ...]) -> tuple[int, float]:
        """The pairs' real tokens up to each closing token and their FLOPs: no LM head (one scalar a reply)."""
        tokens, width, _ = pair_work(*batch[:4], shared=self.cfg.share_prompt, extra=1)
        return tokens, self.work_flops(tokens, width, 0)

    def pair_rewards(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        xc, yc, xr, yr = batch[:4]
        with autocast(self.precision, self.device):
            if self.cfg.share_prompt:
                s = share_prompts(xc, yc, xr, yr, extra=1)
                r = self.fwd(s.x, branches=s.branches, reward_at=s.reads)
            else:
                r = self.fwd(torch.cat([xc, xr]), reward_at=torch.cat([reward_positions(yc), reward_positions(yr)]))
        return r[: xc.shape[0]], r[xc.shape[0] :]

    def forward_loss(self, batch: tuple[Tensor, ...]) -> Tensor:  # type: ignore[override]
        rc, rr = self.pair_rewards(batch)
        self.add_stats(**{
            "rewards/chosen": rc.detach().mean(), "rewards/rejected": rr.detach().mean(),
            "rewards/margins": (rc - rr).detach().mean(), "rewards/accuracies": (rc > rr).float().mean(),
        })  # fmt: skip
        return -F.logsigmoid(rc - rr).mean()

    def evaluate_loss(self) -> float:
        def score(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
            rc, rr = self.pair_rewards(batch)
            return -F.logsigmoid(rc - rr).sum(), rc, rr

        loss, self.val_accuracy = evaluate_pairs(self, score, extra=1)  # read at the closing token itself
        return loss

    def eval_line(self) -> str:
        return f"held-out pairwise accuracy {self.val_accuracy:.3f}"

    def eval_record(self) -> dict[str, float]:
        return {"val_loss": round(self.progress.val_loss, 6), "val_pair_acc": round(self.val_accuracy, 6)}

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["val_pair_acc"] = getattr(self, "val_accuracy", None)
        out["pairs"] = len(self.shards.train)
        return out


@torch.no_grad()
def score_replies(model: nn.Module, tok: Any, prompt: Sequence[tuple[str, str]], replies: Sequence[str]) -> list[float]:
    """The reward of each reply to the conversation `prompt` (rendered with kiln's chat template)."""
    from kiln.posttrain.dpo_data import _window
    from kiln.posttrain.render import render_for_training

    block = model.config.block_size
    n_prompt = len(render_for_training(tok, prompt)[0]) if prompt else 0
    xs, ys = [], []
    for reply in replies:
        ids, trained = render_for_training(tok, [*prompt, ("assistant", reply)])
        x, y, _ = _window(ids, [False] * n_prompt + trained[n_prompt:], block)
        xs.append(x)
        ys.append(y)
    x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
    at = reward_positions(y)
    x = x[:, : int(at.max()) + 1]  # attention is causal: the columns after the last one read change nothing
    device = next(model.parameters()).device
    return model(x.to(device), reward_at=at.to(device)).tolist()


@dataclass
class RewardSummary(FineTuneSummary):
    val_pair_acc: float | None = None
    """Held-out share of pairs whose chosen reply gets the higher reward."""
    pairs: int = 0

    stage = "reward"

    def report(self) -> str:
        return (
            f"\nheld-out pairwise accuracy {self.val_pair_acc or 0:.3f} after {self.steps} steps on {self.pairs:,} "
            f"pairs\nreward model: {self.out_dir}"
        )


def run(config: RewardConfig) -> RewardSummary:
    return run_finetune(RewardTrainer, RewardSummary, config)
