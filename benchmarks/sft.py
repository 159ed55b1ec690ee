"""kiln sft vs TRL's SFTTrainer: the same Llama-shaped model, data and hyperparameters, in one run on this CPU.

    python benchmarks/sft.py [--steps 40] [--batch 8] [--conversations 512]

What is the same: the model (a kiln checkpoint exported with `kiln export hf`, so both start from identical
weights), the token ids and the loss mask (the conversations are rendered once by kiln's chat template and TRL
gets them pre-tokenised with -100 labels), AdamW (lr, betas, eps, no weight decay), constant schedule, gradient
clipping at 1.0, fp32, batch size, torch threads, and, in the padded comparison, the order of the examples
(TRL reads them sequentially in kiln's shuffled order), so the two loss curves should agree step by step.

What differs: both pad a batch to its longest row; kiln by default packs conversations into full rows (each
masked from the others, positions restarting), which is its speed, and the padded comparison is there to check
the losses step by step. Throughput counts real (non-padding) tokens per second over the steps after the first three.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch


def build(root: Path, n_conv: int) -> tuple[Path, Path, Path]:
    """The shared base model, its HF export, and the chat data."""
    from posttrain_model import build_base

    ckpt, hf_dir, tasks = build_base(root)
    data = root / "chat.jsonl"
    data.write_text("".join(json.dumps(t.record()) + "\n" for t in tasks[:n_conv]), encoding="utf-8")
    return ckpt, hf_dir, data


def kiln_run(ckpt: Path, data: Path, out: Path, args, packing: bool) -> tuple[list[float], float, object]:
    """(losses, real tokens/s after warm-up, the trainer) for one in-process kiln sft run."""
    from kiln.posttrain.sft_config import SFTConfig
    from kiln.posttrain.sft_trainer import SFTTrainer
    from kiln.train import distributed as D

    cfg = SFTConfig(
        checkpoint=str(ckpt), inputs=[str(data)], out_dir=out, packing=packing, batch_size=args.batch,
        max_steps=args.steps, lr=args.lr, warmup_steps=0, schedule="constant", weight_decay=0.0, beta1=0.9,
        beta2=0.95, eps=1e-8, grad_clip=1.0, precision="fp32", device="cpu", log_interval=1,
        eval_interval=10**6, eval_batches=1, val_fraction=0.02, seed=0, threads=args.threads, overwrite=True,
        loss_spike_factor=0.0,
    )  # fmt: skip
    cfg.validate()
    info, device = D.init_distributed("cpu")
    trainer = SFTTrainer(cfg, info, device, lambda _m: None)
    real = _real_tokens_per_step(trainer, args)
    trainer.fit()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    times = [r["elapsed_s"] for r in rows if "elapsed_s" in r]
    warm = 3
    rate = sum(real[warm:]) / (times[-1] - times[warm - 1])
    return losses, rate, trainer


def _real_tokens_per_step(trainer, args) -> list[int]:
    """Non-padding tokens in each coming step's batch, read from a copy of the loader (same order)."""
    import copy

    loader = copy.deepcopy(trainer.loader)
    return [int((loader.next_batch()[2] >= 0).sum()) for _ in range(args.steps)]


def kiln_order(trainer, args) -> list[int]:
    """The conversation index of each row kiln reads, in order (padded mode: one conversation per row)."""
    import copy

    loader = copy.deepcopy(trainer.loader)
    loader.epoch, loader.pos = 0, 0
    loader._order = loader._permutation(0)
    rows = []
    for _ in range(args.steps):
        g = args.batch
        while g:
            if loader.pos >= len(loader._order):
                loader.epoch, loader.pos = loader.epoch + 1, 0
                loader._order = loader._permutation(loader.epoch)
            rows.append(int(loader._order[loader.pos]))
            loader.pos += 1
            g -= 1
    return rows


def trl_run(hf_dir: Path, trainer_kiln, order: list[int], out: Path, args) -> tuple[list[float], float]:
    """TRL's SFTTrainer on the same rows (pre-tokenised, -100 labels), read sequentially in kiln's order."""
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from kiln.posttrain.conversations import read_conversations
    from kiln.posttrain.render import render_for_training
    from kiln.posttrain.sft_data import held_out

    # The same examples kiln packed one per row, rendered by the same function (ids and trained mask).
    cfg = trainer_kiln.cfg
    convs = [c for c in read_conversations(cfg.inputs) if not held_out(c.turns, cfg.val_fraction)]
    examples = [render_for_training(trainer_kiln.tokenizer, c.turns) for c in convs]
    examples = [(ids[: trainer_kiln.block + 1], t[: trainer_kiln.block + 1]) for ids, t in examples]
    assert len(examples) == len(trainer_kiln.shards.train), "kiln dropped conversations: the rows would not align"
    rows = []
    for r in order:
        ids, trained = examples[r]
        # HF labels are aligned with input_ids (the model shifts them); -100 = not trained, as kiln's mask.
        rows.append({"input_ids": ids, "labels": [i if t else -100 for i, t in zip(ids, trained, strict=True)]})
    dataset = Dataset.from_list(rows)

    exact: list[float] = []

    class Sequential(SFTTrainer):
        def _get_train_sampler(self, *a, **k):  # kiln's order, not a second shuffle
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, *a, **k):  # the unrounded loss (the logs keep 4 digits)
            out = super().compute_loss(model, inputs, *a, **k)
            loss = out[0] if isinstance(out, tuple) else out
            if model.training:
                exact.append(float(loss.detach()))
            return out

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    config = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.95,
        adam_epsilon=1e-8, max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        bf16=False,  # TRL's default is True, which autocasts even a CPU run to bf16: fp32 on both sides
        dataloader_num_workers=0, seed=0, max_length=None, packing=False, disable_tqdm=True,
        dataset_num_proc=None,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    tok.pad_token = tok.eos_token
    trainer = Sequential(model=model, args=config, train_dataset=dataset, processing_class=tok, callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints every step's log dict: 40 lines of noise
    t0 = time.perf_counter()
    assert trainer.accelerator.mixed_precision == "no", "TRL would autocast: not fp32 vs fp32"
    trainer.train()
    losses = exact
    real = [sum(len(rows[i]["input_ids"]) - 1 for i in range(s * args.batch, (s + 1) * args.batch)) for s in
            range(args.steps)]  # fmt: skip
    warm = 3
    rate = sum(real[warm:]) / (times[-1] - times[warm - 1])
    del t0
    return losses, rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--conversations", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="kiln-sft-bench-"))
    try:
        ckpt, hf_dir, data = build(root, args.conversations)
        pad_losses, pad_rate, kt = kiln_run(ckpt, data, root / "kiln-pad", args, packing=False)
        order = kiln_order(kt, args)
        trl_losses, trl_rate = trl_run(hf_dir, kt, order, root / "trl", args)
        pack_losses, pack_rate, _ = kiln_run(ckpt, data, root / "kiln-pack", args, packing=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    diffs = [abs(a - b) for a, b in zip(pad_losses, trl_losses, strict=False)]
    print(f"machine: {torch.get_num_threads()} torch threads; steps {args.steps}, batch {args.batch}, lr {args.lr}")
    print(f"loss at step 1: kiln {pad_losses[0]:.6f}  TRL {trl_losses[0]:.6f}  |diff| {diffs[0]:.2e}")
    print(f"loss curves (same batches, padded): max |diff| {max(diffs):.2e}, final kiln {pad_losses[-1]:.4f} "
          f"TRL {trl_losses[-1]:.4f}")  # fmt: skip
    print(f"kiln packed: final loss {pack_losses[-1]:.4f} (different batches: packed rows)")
    print(f"real tokens/s: TRL (pads per batch) {trl_rate:,.0f} | kiln padded per batch {pad_rate:,.0f} "
          f"({pad_rate / trl_rate:.2f}x) | kiln packed {pack_rate:,.0f} ({pack_rate / trl_rate:.2f}x TRL, "
          f"{pack_rate / pad_rate:.2f}x kiln padded)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
