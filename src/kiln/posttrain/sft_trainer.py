"""`SFTTrainer`: the pretraining `Trainer` with conversations for data and the assistant's tokens for loss.

Everything else — optimizers, schedule, precision, DDP/FSDP, signals, atomic checkpoints, exact resume — is the
base class's, so a fine-tuning run behaves like a training run in every way a user can observe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kiln.posttrain.finetune import FineTuner
from kiln.posttrain.lora import LoraFineTuning
from kiln.posttrain.packing import IGNORE
from kiln.posttrain.sft_config import SFTConfig
from kiln.posttrain.sft_data import SFTData, SFTLoader, prepare_sft_data
from kiln.train.precision import autocast

Batch4 = tuple[Tensor, Tensor, Tensor, Tensor]


class SFTTrainer(LoraFineTuning, FineTuner):
    stage_name = "sft"
    cfg: SFTConfig

    def setup_data(self) -> SFTData:
        cfg = self.cfg
        source, _, tokenizer = self.source()
        data = prepare_sft_data(
            tokenizer,
            cfg.inputs,
            self._model_cfg.block_size,
            val_fraction=cfg.val_fraction,
            packing=cfg.packing,
            overlong=cfg.overlong,
            max_examples=cfg.max_examples,
            where=str(cfg.checkpoint or source),
            keyword_weight=cfg.keyword_weight,
        )
        st = data.train_stats
        if st.truncated or st.dropped_too_long or st.dropped_no_target:
            self.log(
                f"note: of {st.examples} training conversations, {st.truncated} truncated to the context, "
                f"{st.dropped_too_long} dropped as too long, {st.dropped_no_target} dropped with no assistant token "
                f"in the context" + (f" (first: {st.dropped_sources[0]})" if st.dropped_sources else "")
            )
        return data

    def build_loader(self) -> SFTLoader:
        cfg, info = self.cfg, self.info
        return SFTLoader(self.shards.train, cfg.batch_size, cfg.seed, info.rank, info.world_size)

    def build_val_batches(self) -> list[Any]:
        val, b = self.shards.val, self.cfg.batch_size
        batches = [
            tuple(torch.from_numpy(a[i : i + b]) for a in (val.x, val.y, val.seg)) for i in range(0, len(val), b)
        ]
        self.n_val = min(len(batches), self.cfg.eval_batches)
        return batches[: self.n_val]

    def model_flops_per_token(self) -> float:
        """The LM head runs only on the trained (assistant) tokens (`forward_loss`'s logits_at): its 6·V·d
        FLOPs count for that share of the tokens. Counting them for every token, as pretraining does, put the
        quickstart's SFT at an MFU of 1.9."""
        if self.model_config.n_experts and not self.shards.weighted:  # the full-logits path
            return super().model_flops_per_token()
        st = self.shards.train_stats
        tokens = max(1, st.rows * self.block)
        return self.work_flops(tokens, self.block, st.trained) / tokens

    def describe(self) -> str:
        d: SFTData = self.shards
        st = d.train_stats
        return (
            f"sft: {self.raw.num_params():,} parameters from {self.cfg.checkpoint or self.resume_from}, context "
            f"{self.block}; {d.conversations:,} conversations -> {st.rows:,} train windows "
            f"({'packed' if self.cfg.packing else 'one per window'}, {st.fill:.0%} filled, {st.trained:,} trained "
            f"tokens), {len(d.val)} held-out windows; device {self.device} x {self.info.world_size}, "
            f"{self.precision}{self.precision_note}"
            + self.lora_line()
            + (f"; resuming at step {self.progress.step}" if self.resume_from is not None else "")
        )

    # ------------------------------------------------------------------------------------------------ a step
    def next_batch(self) -> Batch4:  # type: ignore[override]
        return tuple(t.to(self.device, non_blocking=True) for t in self.loader.next_batch())  # type: ignore[return-value]

    def forward_loss(self, batch: Batch4) -> Tensor:  # type: ignore[override]
        x, y, s, w = batch
        if self.model_config.n_experts and not self.shards.weighted:  # MoE's balancing term: the full-logits path
            with autocast(self.precision, self.device):
                _, loss = self.fwd(x, y, segments=s)
            return loss
        keep = y != IGNORE
        with autocast(self.precision, self.device):
            logits, _ = self.fwd(x, segments=s, logits_at=keep)  # the LM head on the assistant's tokens only
        if not self.shards.weighted:
            return torch.nn.functional.cross_entropy(logits.float(), y[keep])
        weights = w[keep]  # keyword_weight: a weighted mean, so the loss keeps its scale
        ce = torch.nn.functional.cross_entropy(logits.float(), y[keep], reduction="none")
        loss = (ce * weights).sum() / weights.sum()
        if self.model_config.n_experts:  # the balancing term GPT.forward adds to its own loss
            aux = torch.stack([blk.mlp.aux_loss for blk in self.raw.blocks]).mean()
            loss = loss + self.model_config.moe_aux_loss_coef * aux
        return loss

    @torch.no_grad()
    def evaluate_loss(self) -> float:
        """Held-out assistant loss (mean over trained tokens) and token accuracy; every rank scores every batch
        (the held-out set is small), so FSDP ranks run equally many forwards and no all-reduce is needed."""
        self.raw.eval()
        loss_sum, right, count = 0.0, 0, 0
        for x, y, s in self.val:
            x, y, s = x.to(self.device), y.to(self.device), s.to(self.device)
            with autocast(self.precision, self.device):
                # all_logits, not targets: with loss_chunk_tokens a forward with targets returns no logits.
                logits, _ = self.fwd(x, segments=s, all_logits=True)
            keep = y != IGNORE
            logits = logits.float()[keep]
            targets = y[keep]
            loss_sum += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
            right += int((logits.argmax(-1) == targets).sum())
            count += int(keep.sum())
        self.raw.train()
        self.val_token_acc = right / max(1, count)
        return loss_sum / max(1, count)

    def eval_line(self) -> str:
        return f"held-out assistant loss {self.progress.val_loss:.4f}  token accuracy {self.val_token_acc:.3f}"

    def eval_record(self) -> dict[str, float]:
        return {"val_loss": round(self.progress.val_loss, 6), "val_token_acc": round(self.val_token_acc, 6)}

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["val_token_acc"] = getattr(self, "val_token_acc", None)
        st = self.shards.train_stats
        out["data"] = {
            "conversations": self.shards.conversations,
            "train_windows": st.rows,
            "fill": st.fill,
            "trained_tokens": st.trained,
            "truncated": st.truncated,
            "dropped": st.dropped_too_long + st.dropped_no_target,
            "held_out_windows": len(self.shards.val),
        }
        return out
