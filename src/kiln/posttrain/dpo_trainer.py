"""`DPOTrainer`: preference tuning on the pretraining `Trainer` (checkpoints, exact resume, DDP/FSDP).

The reference model's log-probs are computed once, before training, from the starting checkpoint (by default), so
no second model stays in memory; `reference=live` keeps a frozen copy instead (the same numbers, for checking).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from kiln.model.checkpoint import load_checkpoint
from kiln.posttrain.dpo_config import DPOConfig
from kiln.posttrain.dpo_data import (
    DPOData,
    PairLoader,
    PairWindows,
    evaluate_pairs,
    pair_work,
    prepare_dpo_data,
    used_length,
)
from kiln.posttrain.dpo_loss import owned_logps, preference_loss, selected_logps
from kiln.posttrain.finetune import FineTuner
from kiln.posttrain.packing import IGNORE
from kiln.posttrain.shared_prompt import share_prompts
from kiln.train.precision import autocast

REF_BATCH = 8
FALLING = 5  # consecutive logged falls of the chosen log-probs that trigger the warning


class DPOTrainer(FineTuner):
    stage_name = "dpo"
    cfg: DPOConfig

    def setup_data(self) -> DPOData:
        cfg = self.cfg
        source, model_cfg, tok = self.source()
        data = prepare_dpo_data(
            tok, cfg.inputs, model_cfg.block_size, val_fraction=cfg.val_fraction, overlong=cfg.overlong,
            max_examples=cfg.max_examples, where=str(cfg.checkpoint or source),
        )  # fmt: skip
        if data.truncated or data.dropped:
            self.log(f"note: of {data.pairs} pairs, {data.truncated} truncated to the context, {data.dropped} dropped")
        return data

    def build_loader(self) -> PairLoader:
        cfg, info = self.cfg, self.info
        self.reference = None
        if cfg.loss != "simpo":
            # The reference is the starting checkpoint, also when this run resumes from a later one. Before the
            # first step the policy is that checkpoint, so a fresh run scores with it: no second model is loaded.
            if cfg.reference == "live":
                self.reference, _, _ = load_checkpoint(cfg.checkpoint, device=self.device)
                self.reference.requires_grad_(False)
            else:
                ref = self.raw if self.resume_from is None else load_checkpoint(cfg.checkpoint, device=self.device)[0]
                for w in (self.shards.train, self.shards.val):
                    w.ref_c, w.ref_r = self._score(ref, w)
                self.raw.train()  # _score left it in eval mode
        self._chosen_history: list[float] = []
        self._warned = False
        return PairLoader(self.shards.train, cfg.batch_size, cfg.seed, info.rank, info.world_size)

    @torch.no_grad()
    def _score(self, model: torch.nn.Module, w: PairWindows) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        out = []
        for i in range(0, len(w), REF_BATCH):
            n = used_length(w.yc[i : i + REF_BATCH], w.yr[i : i + REF_BATCH])
            rows = (torch.from_numpy(a[i : i + REF_BATCH, :n]).to(self.device) for a in (w.xc, w.yc, w.xr, w.yr))
            out.append(self.pair_logps(model, *rows)[0].double().cpu().numpy().reshape(2, -1))
        both = np.concatenate(out, axis=1)
        return both[0], both[1]

    def build_val_batches(self) -> list[Any]:
        n = len(self.shards.val)
        batches = [np.arange(i, min(n, i + self.cfg.batch_size)) for i in range(0, n, self.cfg.batch_size)]
        self.n_val = min(len(batches), self.cfg.eval_batches)
        return batches[: self.n_val]

    def describe(self) -> str:
        d: DPOData = self.shards
        return (
            f"dpo ({self.cfg.loss}, beta {self.cfg.beta}, reference {self.cfg.reference}): "
            f"{self.raw.num_params():,} parameters from {self.cfg.checkpoint}, context {self.block}; "
            f"{len(d.train):,} train pairs, {len(d.val)} held out; device {self.device}, "
            f"{self.precision}{self.precision_note}"
            + (f"; resuming at step {self.progress.step}" if self.resume_from is not None else "")
        )

    # ------------------------------------------------------------------------------------------------ a step
    def next_batch(self) -> tuple[Tensor, ...]:  # type: ignore[override]
        return tuple(t.to(self.device, non_blocking=True) for t in self.loader.next_batch())

    def batch_work(self, batch: tuple[Tensor, ...]) -> tuple[int, float]:
        """The pairs' real tokens (the prompt once per pair when shared) and their FLOPs, the LM head on the
        replies' tokens only (`logits_at`); the reference's precomputed log-probs cost nothing here."""
        tokens, width, targets = pair_work(*batch[:4], shared=self.cfg.share_prompt)
        # reference=live: one more forward, a third of a forward and backward
        return tokens, self.work_flops(tokens, width, targets) * (4 / 3 if self.reference is not None else 1)

    def pair_logps(self, model: torch.nn.Module, xc: Tensor, yc: Tensor, xr: Tensor, yr: Tensor) -> tuple[Tensor, ...]:
        """The summed log-probs of the chosen replies then the rejected ones (2B), and their token counts."""
        if self.cfg.share_prompt:
            s = share_prompts(xc, yc, xr, yr)
            with autocast(self.precision, self.device):
                logits, _ = model(s.x, branches=s.branches, logits_at=s.at)
            return owned_logps(logits, s.targets, s.owner, 2 * xc.shape[0])
        x, y = torch.cat([xc, xr]), torch.cat([yc, yr])
        keep = y != IGNORE
        with autocast(self.precision, self.device):
            logits, _ = model(x, logits_at=keep)
        return selected_logps(logits, y, keep)

    def pair_terms(self, model: torch.nn.Module, batch: tuple[Tensor, ...], w: PairWindows) -> dict[str, Tensor]:
        """Policy log-probs of both replies, the reference's, and the loss terms, for a batch of pairs."""
        cfg = self.cfg
        xc, yc, xr, yr, idx = batch
        logps, counts = self.pair_logps(model, xc, yc, xr, yr)
        b = xc.shape[0]
        pi_c, pi_r, n_c, n_r = logps[:b], logps[b:], counts[:b].float(), counts[b:].float()
        ref_c = ref_r = None
        if cfg.loss != "simpo":
            if self.reference is not None:
                with torch.no_grad():
                    ref = self.pair_logps(self.reference, xc, yc, xr, yr)[0]
                ref_c, ref_r = ref[:b], ref[b:]
            else:
                i = idx.cpu().numpy()
                ref_c = torch.as_tensor(w.ref_c[i], dtype=pi_c.dtype, device=pi_c.device)
                ref_r = torch.as_tensor(w.ref_r[i], dtype=pi_c.dtype, device=pi_c.device)
        terms = preference_loss(cfg.loss, cfg.beta, pi_c, pi_r, ref_c, ref_r, n_c, n_r, cfg.simpo_gamma)
        loss = terms.loss.mean()
        if cfg.sft_weight:
            loss = loss + cfg.sft_weight * (-(pi_c / n_c)).mean()
        return {
            "loss": loss, "pi_c": pi_c.detach(), "pi_r": pi_r.detach(),
            "rc": terms.chosen_rewards, "rr": terms.rejected_rewards,
        }  # fmt: skip

    def forward_loss(self, batch: tuple[Tensor, ...]) -> Tensor:  # type: ignore[override]
        t = self.pair_terms(self.fwd, batch, self.shards.train)
        self.add_stats(**{
            "rewards/chosen": t["rc"].mean(), "rewards/rejected": t["rr"].mean(),
            "rewards/margins": (t["rc"] - t["rr"]).mean(), "rewards/accuracies": (t["rc"] > t["rr"]).float().mean(),
            "logps/chosen": t["pi_c"].mean(), "logps/rejected": t["pi_r"].mean(),
        })  # fmt: skip
        return t["loss"]

    def step_record(self) -> dict[str, float]:
        """The preference metrics of the steps since the last log (as TRL names them); warns once when the chosen
        replies' log-probs fall log after log, a known DPO failure (both replies pushed down)."""
        out = super().step_record()
        if "logps/chosen" in out:
            hist = self._chosen_history
            hist.append(out["logps/chosen"])
            falling = len(hist) > FALLING and all(
                a > b for a, b in zip(hist[-FALLING - 1 :], hist[-FALLING:], strict=False)
            )
            if falling and not self._warned and self.info.is_main:
                self._warned = True
                self.bar.write(
                    f"warning: the chosen replies' log-probs fell {FALLING} logs in a row ({hist[-FALLING - 1]:.2f} -> "
                    f"{hist[-1]:.2f}): DPO is lowering both replies; try a smaller lr, a larger beta, or sft_weight"
                )
        return out

    def evaluate_loss(self) -> float:
        """Held-out preference loss and accuracy (the share of pairs whose chosen reply gets the higher reward)."""

        def score(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
            t = self.pair_terms(self.fwd, batch, self.shards.val)
            return t["loss"] * len(batch[0]), t["rc"], t["rr"]

        loss, self.val_accuracy = evaluate_pairs(self, score)
        return loss

    def eval_line(self) -> str:
        return f"held-out loss {self.progress.val_loss:.4f}  preference accuracy {self.val_accuracy:.3f}"

    def eval_record(self) -> dict[str, float]:
        return {"val_loss": round(self.progress.val_loss, 6), "val_pref_acc": round(self.val_accuracy, 6)}

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["val_pref_acc"] = getattr(self, "val_accuracy", None)
        out["pairs"] = len(self.shards.train)
        return out
