"""`kiln rl CHECKPOINT PROMPTS...`: GRPO with verifiable rewards, on the pretraining `Trainer`.

Each step takes `batch_size` prompts, samples `group` completions of each with kiln's own batched KV-cache engine
in this process (the policy that is being trained: no weight sync to a separate server), scores them with the
reward, and takes one policy-gradient step on the group-normalised advantages (`kiln.posttrain.grpo`). Sampling
is seeded by (seed, step), so a resumed run samples what the uninterrupted run sampled.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kiln.generate.sampling import SamplingParams
from kiln.model.inference_dtype import resolve as resolve_inference_dtype
from kiln.posttrain.finetune import FineTuner, FineTuneSummary, run_finetune
from kiln.posttrain.grpo import LOSS_TYPES, group_advantages, grpo_loss
from kiln.posttrain.lora import LoraFineTuning, merged_state, without_adapters
from kiln.posttrain.packing import IGNORE
from kiln.posttrain.rl_data import PromptLoader, read_prompts
from kiln.posttrain.rl_rewards import get_reward, safe_rewards
from kiln.posttrain.sft_config import FineTuneConfig, LoraOptions, load_finetune_config
from kiln.train.precision import autocast
from kiln.utils.checks import require

SAMPLE_DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class RLConfig(LoraOptions, FineTuneConfig):
    """GRPO on prompts with a verifiable reward."""

    out_dir: Path = Path("runs/rl")
    """The run directory: checkpoints, metrics.jsonl, kiln-rl.toml."""
    reward: str = "words"
    """words (the share of the record's `words` used), all_words (1 when every one is used, else 0), number (the
    last number equals `answer`'s), model:PATH (a `kiln reward` model), repetition (minus the share of repeated
    word 3-grams); several add up with optional weights: words+repetition, all_words+0.5*repetition."""
    group: int = 8
    """Completions sampled per prompt (GRPO's G)."""
    batch_size: int = 4
    """Prompts per micro-batch (each gives `group` completions)."""
    max_new_tokens: int = 96
    """Most tokens per completion."""
    temperature: float = 1.0
    """Sampling temperature of the completions. The loss scores them under that same tempered policy (logits /
    temperature, as TRL's GRPOTrainer does), so its gradient is the sampling policy's."""
    top_k: int = 0
    """Sample among the k most likely tokens only (0 = off); with top_p and min_p, as `kiln generate`, the server
    and TRL's GRPOConfig offer them, so the policy is trained on replies drawn the way it will be used (the
    quickstart's check samples with top_k 50). The loss scores the completions under the whole tempered
    distribution, as TRL's does: the truncation shapes which replies are drawn, not their log-probs."""
    top_p: float = 1.0
    """Sample from the smallest set of most likely tokens whose probability reaches top_p (1 = off), after top_k."""
    min_p: float = 0.0
    """Drop tokens less likely than min_p times the most likely one (0 = off)."""
    sample_dtype: str = "auto"
    """Precision the completions are sampled in: float32; bfloat16 (a bf16 copy of the policy, refreshed from its
    weights before every sampling: on CPUs that multiply bf16 in hardware, sampling is about 1.4x faster); or auto
    (bfloat16 where the update itself autocasts to bf16 and the hardware has bf16, so sampling is no less exact
    than the update; float32 elsewhere)."""
    clip: float = 0.2
    """PPO-style clipping of the probability ratio."""
    updates_per_batch: int = 1
    """Optimizer steps on each sampled batch (GRPO's mu, TRL's num_iterations): the policy that sampled it is
    pi_old for all of them, so the ratio and its clipping act from the second step on (with 1 the ratio is always
    1). Sampling is most of a CPU step, so more updates per sample learn more per minute, at the cost of staler
    samples. A run resumed from a checkpoint inside a cycle samples afresh there."""
    kl_beta: float = 0.0
    """Weight of the KL penalty to the starting model (0 = none, as recent GRPO practice; > 0 keeps a frozen copy)."""
    scale_rewards: bool = True
    """Divide advantages by the group's reward std (GRPO); false = Dr. GRPO's centring only."""
    loss_type: str = "grpo"
    """How the per-token loss is averaged (TRL's names): grpo (per completion, then over completions), bnpo (over
    all the batch's completion tokens, DAPO's), dr_grpo (summed per completion, divided by max_new_tokens)."""
    max_steps: int = 50
    """Optimizer steps."""
    lr: float = 1e-5
    """Peak learning rate."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    eval_interval: int = 25
    """Steps between held-out evaluations (mean reward of greedy completions)."""
    eval_batches: int = 4
    """Held-out batches (of batch_size prompts) per evaluation."""
    val_fraction: float = 0.1
    """Share of prompts held out (at least one)."""
    loss_spike_factor: float = 0.0
    """Off: policy-gradient losses change sign and scale by design."""

    def validate(self) -> RLConfig:
        require(self.group >= 2, f"group must be >= 2 (GRPO compares completions of one prompt), got {self.group}")
        require(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        require(self.temperature > 0, f"temperature must be > 0 (sampling), got {self.temperature}")
        require(0 < self.clip < 1, f"clip must be in (0, 1), got {self.clip}")
        SamplingParams(top_k=self.top_k, top_p=self.top_p, min_p=self.min_p).validate()  # names a bad value
        require(self.updates_per_batch >= 1, f"updates_per_batch must be >= 1, got {self.updates_per_batch}")
        require(self.kl_beta >= 0, f"kl_beta must be >= 0, got {self.kl_beta}")
        require(self.sample_dtype in SAMPLE_DTYPES,
                f"sample_dtype must be {', '.join(SAMPLE_DTYPES)}, got {self.sample_dtype!r}")  # fmt: skip
        require(self.loss_type in LOSS_TYPES, f"loss_type must be grpo, bnpo or dr_grpo, got {self.loss_type!r}")
        self.check_lora()
        super().validate()
        return self


def load_rl_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RLConfig:
    return load_finetune_config(RLConfig, path, overrides)


@dataclass
class RLData:
    tokenizer: Any
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]


class RLTrainer(LoraFineTuning, FineTuner):
    stage_name = "rl"
    cfg: RLConfig

    def setup_data(self) -> RLData:
        from kiln.posttrain.render import require_chat_tokens
        from kiln.posttrain.sft_data import split_held_out

        cfg = self.cfg
        source, _, tok = self.source()
        require_chat_tokens(tok, str(cfg.checkpoint or source))
        prompts = read_prompts(cfg.inputs, cfg.max_examples)
        train, val = split_held_out(prompts, lambda p: tuple(p["prompt_turns"]), cfg.val_fraction)
        require(bool(train), f"{', '.join(cfg.inputs)}: too few prompts to hold {cfg.val_fraction:.0%} out and train")
        return RLData(tok, train, val)

    def build_loader(self) -> PromptLoader:
        cfg, info = self.cfg, self.info
        self.reward_fn = get_reward(cfg.reward, self.tokenizer, self.device)
        self.reference = None
        if cfg.kl_beta:
            from kiln.model.checkpoint import load_checkpoint

            self.reference = load_checkpoint(cfg.checkpoint, device=self.device)[0].requires_grad_(False)
        self._calls, self._step_seen = 0, -1
        self._replay: dict[int, dict[str, Any]] = {}  # micro-batch -> its sampled batch, for updates_per_batch > 1
        self._sampler: nn.Module | None = None  # the bf16 or merged copy sampler() keeps
        return PromptLoader(len(self.shards.train), cfg.batch_size, cfg.seed, info.rank, info.world_size)

    def build_val_batches(self) -> list[Any]:
        n, b = len(self.shards.val), self.cfg.batch_size
        batches = [list(range(i, min(n, i + b))) for i in range(0, n, b)]
        self.n_val = min(len(batches), self.cfg.eval_batches)
        return batches[: self.n_val]

    def probe_shape(self) -> tuple[int, int]:
        """An update's rows (every prompt's group) and width (the longest of the first prompts, filled up)."""
        cfg = self.cfg
        longest = max(map(len, self._prompt_ids(self.shards.train[:64])))
        return cfg.batch_size * cfg.group, min(self.block, longest + cfg.max_new_tokens)

    def describe(self) -> str:
        cfg = self.cfg
        return (
            f"rl (GRPO, reward {cfg.reward}, group {cfg.group}): {self.raw.num_params():,} parameters from "
            f"{cfg.checkpoint}; {len(self.shards.train):,} prompts, {len(self.shards.val)} held out; device "
            f"{self.device}, {self.precision}{self.precision_note}, sampling in {self.sample_precision()}"
            + self.lora_line()
            + (f"; resuming at step {self.progress.step}" if self.resume_from is not None else "")
        )

    # ------------------------------------------------------------------------------------------------ sampling
    def _prompt_ids(self, records: list[dict[str, Any]]) -> list[list[int]]:
        from kiln.tokenizer.chat import render_chat_ids

        return [render_chat_ids(self.tokenizer, r["prompt_turns"]) for r in records]

    @torch.no_grad()
    def sample(self, prompt_ids: list[list[int]], group: int, temperature: float, seed: int) -> list[Any]:
        from kiln.generate import generate_batch
        from kiln.tokenizer.chat import reply_stops

        prompts = [p for p in prompt_ids for _ in range(group)]
        room = self.block - max(map(len, prompts))
        if room < 1:
            raise ValueError(f"a prompt fills the whole context ({self.block} tokens): nothing left to generate")
        params = SamplingParams(
            temperature=temperature, top_k=self.cfg.top_k, top_p=self.cfg.top_p, min_p=self.cfg.min_p,
            max_new_tokens=min(self.cfg.max_new_tokens, room), seed=seed, stop_token_ids=reply_stops(self.tokenizer),
        )  # fmt: skip
        self.raw.eval()
        try:
            return generate_batch(self.sampler(), prompts, params, tokenizer=self.tokenizer)
        finally:
            self.raw.train()

    def sample_precision(self) -> str:
        """sample_dtype resolved: bfloat16 or float32 (always float32 under FSDP, whose sharded weights have no
        whole copy here)."""
        dtype = self.cfg.sample_dtype
        if dtype == "auto":  # bf16 where the update is bf16 and the hardware multiplies bf16 natively
            native = resolve_inference_dtype("auto", self.device) == torch.bfloat16
            dtype = "bfloat16" if self.precision == "bf16" and native else "float32"
        return "float32" if self.fsdp else dtype

    def sampler(self) -> nn.Module:
        """The policy to sample from: itself, or a copy with its current weights, refreshed by copying every weight
        in place (which also renews the CPU decode path's packed weights, keyed on the tensors' versions): in bf16
        (sample_dtype), half the policy's fp32 bytes more; under LoRA, kiln's plain model holding the merged
        weights, base + adapters, so sampling runs no adapter layers and never sees a stale base."""
        lora = bool(self.cfg.lora_rank)
        bf16 = self.sample_precision() == "bfloat16"
        if not (lora or bf16):
            return self.raw
        if self._sampler is None:
            plain = without_adapters(self.raw) if lora else copy.deepcopy(self.raw)
            self._sampler = plain.to(torch.bfloat16 if bf16 else torch.float32).eval().requires_grad_(False)
        self._sampler.load_state_dict(merged_state(self.raw) if lora else self.raw.state_dict())
        return self._sampler

    def next_batch(self) -> dict[str, Any]:  # type: ignore[override]
        cfg = self.cfg
        self._calls = self._calls + 1 if self._step_seen == self.progress.step else 1
        self._step_seen = self.progress.step
        replay = self._replay.get(self._calls)
        if self.progress.step % cfg.updates_per_batch and replay is not None:  # a later update on the same samples
            self.add_stats(**replay["stats"])
            return replay
        batch = self._sample_batch()
        if cfg.updates_per_batch > 1:
            batch["old"] = self._old_logps(batch)
            self._replay[self._calls] = batch
        return batch

    def _sample_batch(self) -> dict[str, Any]:
        cfg = self.cfg
        records = [self.shards.train[i] for i in self.loader.next_indices()]
        # Seeded by the step and the micro-batch within it, so a resumed run samples what the first one did.
        seed = cfg.seed * 1_000_003 + self.progress.step * 101 + self._calls
        prompt_ids = self._prompt_ids(records)
        completions = self.sample(prompt_ids, cfg.group, cfg.temperature, seed)
        expanded = [r for r in records for _ in range(cfg.group)]
        rewards, failed = safe_rewards(self.reward_fn, expanded, [c.text for c in completions])
        prompts = [p for p in prompt_ids for _ in range(cfg.group)]
        x, y = self._windows(prompts, [c.tokens for c in completions])
        r = torch.tensor(rewards)
        adv = group_advantages(r, cfg.group, scale=cfg.scale_rewards)
        lengths = [len(c.tokens) for c in completions]
        stats = {
            "reward/mean": float(r.mean()), "reward/std": float(r.view(-1, cfg.group).std(1).mean()),
            "completion_length": float(np.mean(lengths)), "reward_failures": float(failed),
        }  # fmt: skip
        self.add_stats(**stats)
        work = (sum(len(p) + n for p, n in zip(prompts, lengths, strict=True)) - len(prompts), int((y != IGNORE).sum()))
        return {
            "x": x.to(self.device), "y": y.to(self.device), "adv": adv.to(self.device), "stats": stats, "work": work,
        }  # fmt: skip

    def batch_work(self, batch: dict[str, Any]) -> tuple[int, float]:
        """The update's real tokens (prompt + completion, padding not counted) and the FLOPs of its forward and
        backward, the LM head on the completion only. Sampling the group, a reference's forward and the old
        log-probs are not counted: MFU here is the update's alone, below the step's use of the machine."""
        tokens, targets = batch["work"]
        return tokens, self.work_flops(tokens, batch["x"].shape[1], targets)

    @torch.no_grad()
    def _old_logps(self, batch: dict[str, Any]) -> Tensor:
        """The sampling policy's log-probs of the completions (pi_old of the updates that reuse them)."""
        return self._logps(batch["x"], batch["y"])

    def _logps(self, x: Tensor, y: Tensor) -> Tensor:
        """The sampling policy's (B, T) log-probs of the completion tokens (at the sampling temperature), the LM
        head on those tokens only."""
        mask = y != IGNORE
        with autocast(self.precision, self.device):
            logits, _ = self.fwd(x, logits_at=mask)
        return _token_logps(logits, y, mask, self.cfg.temperature)

    def _windows(self, prompts: list[list[int]], completions: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Prompt + completion rows (padded to the longest), targets only on the completion's tokens."""
        seqs = [p + c for p, c in zip(prompts, completions, strict=True)]
        t = max(len(s) for s in seqs) - 1
        x = torch.zeros(len(seqs), t, dtype=torch.long)
        y = torch.full((len(seqs), t), IGNORE, dtype=torch.long)
        for i, (s, p) in enumerate(zip(seqs, prompts, strict=True)):
            x[i, : len(s) - 1] = torch.tensor(s[:-1])
            y[i, len(p) - 1 : len(s) - 1] = torch.tensor(s[len(p) :])
        return x, y

    def forward_loss(self, batch: dict[str, Any]) -> Tensor:  # type: ignore[override]
        x, y, adv = batch["x"], batch["y"], batch["adv"]
        mask = y != IGNORE
        logp = self._logps(x, y)
        ref = None
        if self.reference is not None:
            with torch.no_grad():
                ref = _token_logps(self.reference(x, logits_at=mask)[0], y, mask, self.cfg.temperature)
        # With one update per sampling (the default) pi_old is the policy itself, detached: the ratio is 1.
        old = batch.get("old")
        cfg = self.cfg
        loss, stats = grpo_loss(logp, logp.detach() if old is None else old, adv, mask, cfg.clip, ref, cfg.kl_beta,
                                cfg.loss_type, cfg.max_new_tokens)  # fmt: skip
        self.add_stats(count=False, **stats)  # the same micro-batch as its sampling stats, counted there
        return loss

    @torch.no_grad()
    def evaluate_loss(self) -> float:
        """Held-out mean reward of greedy completions (reported as val_reward; val_loss is its negative, so the
        best checkpoint is the most rewarded one)."""
        total, count = 0.0, 0
        for idx in self.val:
            records = [self.shards.val[i] for i in idx]
            completions = self.sample(self._prompt_ids(records), 1, 1e-6, self.cfg.seed)
            rewards, _ = safe_rewards(self.reward_fn, records, [c.text for c in completions])
            total += sum(rewards)
            count += len(rewards)
        self.val_reward = total / max(1, count)
        return -self.val_reward

    def eval_line(self) -> str:
        return f"held-out reward {self.val_reward:.3f}"

    def eval_record(self) -> dict[str, float]:
        return {"val_reward": round(self.val_reward, 6)}

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["val_reward"] = getattr(self, "val_reward", None)
        return out


def _token_logps(logits: Tensor, y: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """(B, T) log-probs of the targets (0 where masked) from (N, V) logits at the mask's positions, under the policy
    tempered by `temperature`: the completions were drawn from softmax(logits / temperature), so the policy
    gradient is that distribution's. Scored at temperature 1 instead, the gradient would be about `temperature`
    times the sampler's and centred on the untempered policy's expectation, not the sampler's."""
    lf = logits.float() / temperature
    lp = lf.gather(-1, y[mask].unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lf, dim=-1)
    return torch.zeros(y.shape, dtype=lp.dtype, device=lp.device).masked_scatter(mask, lp)


@dataclass
class RLSummary(FineTuneSummary):
    val_reward: float | None = None
    """Held-out mean reward of greedy completions at the last evaluation."""

    stage = "rl"

    def report(self) -> str:
        return f"\nheld-out reward {self.val_reward or 0:.3f} after {self.steps} steps\ncheckpoints: {self.out_dir}"


def run(config: RLConfig) -> RLSummary:
    return run_finetune(RLTrainer, RLSummary, config)
