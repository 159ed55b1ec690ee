"""kiln dpo vs TRL's DPOTrainer: the same Llama-shaped model, pairs and hyperparameters, in one run on this CPU.

    python benchmarks/dpo.py [--steps 30] [--batch 4] [--pairs 256] [--rounds 1]

What is the same: the model (a kiln checkpoint exported with `kiln export hf`: identical weights), the token ids
(kiln renders every pair once with its chat template; TRL gets prompt_ids / chosen_ids / rejected_ids, its own
tokenised format, so `_prepare_dataset` is skipped and nothing else of TRL changes), the sigmoid DPO loss with the
same beta, reference log-probs precomputed before training on both sides (TRL's `precompute_ref_log_probs`), AdamW
(lr, betas, eps, no weight decay), constant schedule, clipping at 1.0, fp32, batch size, threads, and the order of
the pairs (TRL reads them sequentially in kiln's shuffled order), so the loss curves should agree step by step.

What differs: kiln runs each pair's prompt once, both replies after it in one row (`share_prompt=true`, its
default: the same log-probs, tested), where TRL runs the prompt twice, once before each reply. Every round also
runs kiln with `share_prompt=false`, TRL's row layout, and prints that ratio too.

Each side runs in its own process, so each reports its own peak resident memory (ru_maxrss). Throughput is
pairs per second over the steps after the first three.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

WARM = 3


def build(root: Path, n_pairs: int) -> None:
    """The shared base model and its HF export, and word-task pairs: the chosen reply is the story that uses the
    three words, the rejected one a story for other words."""
    from posttrain_model import build_base

    _, _, tasks = build_base(root)
    with (root / "pairs.jsonl").open("w", encoding="utf-8") as f:
        for t, other in itertools.pairwise(tasks[: n_pairs + 1]):
            f.write(json.dumps({"prompt": t.prompt, "chosen": t.story, "rejected": other.story}) + "\n")


def kiln_config(root: Path, args):
    from kiln.posttrain.dpo_config import DPOConfig

    return DPOConfig(
        checkpoint=str(root / "base"), inputs=[str(root / "pairs.jsonl")], out_dir=root / "kiln", batch_size=args.batch,
        max_steps=args.steps, lr=args.lr, beta=0.1, warmup_steps=0, schedule="constant", weight_decay=0.0,
        beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=1.0, precision="fp32", device="cpu", log_interval=1,
        eval_interval=10**6, eval_batches=1, val_fraction=0.02, seed=0, threads=args.threads, overwrite=True,
        peak_tflops=1.0,  # no MFU probe (a timed matmul at setup): TRL reports no MFU
        share_prompt=not args.separate,
    )  # fmt: skip


def side_kiln(root: Path, args) -> dict:
    from kiln.posttrain.dpo_trainer import DPOTrainer
    from kiln.train import distributed as D

    cfg = kiln_config(root, args)
    cfg.validate()
    info, device = D.init_distributed("cpu")
    t0 = time.perf_counter()
    trainer = DPOTrainer(cfg, info, device, lambda _m: None)
    setup = time.perf_counter() - t0
    # The pairs kiln will read, in order: TRL gets the same sequence.
    import copy

    probe = copy.deepcopy(trainer.loader)
    order = [int(i) for _ in range(args.steps) for i in probe.next_batch()[4].tolist()]
    trainer.fit()
    rows = [json.loads(line) for line in (root / "kiln" / "metrics.jsonl").read_text().splitlines()]
    times = [r["elapsed_s"] for r in rows]
    return {
        "losses": [r["train_loss"] for r in rows],
        "pairs_per_s": args.batch * (args.steps - WARM) / (times[-1] - times[WARM - 1]),
        "setup_s": setup,
        "order": order,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def side_trl(root: Path, args, order: list[int]) -> dict:
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from kiln.model.checkpoint import load_checkpoint
    from kiln.posttrain.dpo_data import render_pair
    from kiln.posttrain.pairs import read_pairs
    from kiln.posttrain.sft_data import held_out

    _, tok, _ = load_checkpoint(root / "base")
    cfg = kiln_config(root, args)
    pairs = [p for p in read_pairs(cfg.inputs) if not held_out(p.key, cfg.val_fraction)]
    rows = []
    for i in order:
        (ci, cm), (ri, rm) = render_pair(tok, pairs[i])
        k = cm.index(True)
        assert rm.index(True) == k and ci[:k] == ri[:k], "the replies start at different tokens"
        # kiln trains the reply and its <|im_end|>: the contiguous trained run; the newline after it is not trained.
        rows.append({"prompt_ids": ci[:k], "chosen_ids": ci[k : k + sum(cm)], "rejected_ids": ri[k : k + sum(rm)]})
    dataset = Dataset.from_list(rows)
    times: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    class Sequential(DPOTrainer):
        def _prepare_dataset(self, dataset, *a, **k):  # already kiln's ids in TRL's tokenised format
            return dataset

        def _get_train_sampler(self, *a, **k):  # kiln's order, not a second shuffle
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, *a, **k):  # the unrounded loss (the logs keep 4 digits)
            out = super().compute_loss(model, inputs, *a, **k)
            loss = out[0] if isinstance(out, tuple) else out
            if model.training:
                losses.append(float(loss.detach()))
            return out

    config = DPOConfig(
        output_dir=str(root / "trl"), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=args.lr, beta=0.1, loss_type=["sigmoid"], lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, seed=0, disable_tqdm=True,
        bf16=False,  # TRL's default is True, which autocasts even a CPU run to bf16: fp32 on both sides
        precompute_ref_log_probs=True, max_length=None,
    )  # fmt: skip
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(root / "hf", dtype=torch.float32)
    hf_tok = AutoTokenizer.from_pretrained(root / "hf")
    hf_tok.pad_token = hf_tok.eos_token
    trainer = Sequential(model=model, args=config, train_dataset=dataset, processing_class=hf_tok, callbacks=[Clock()])
    setup = time.perf_counter() - t0
    assert trainer.accelerator.mixed_precision == "no", "TRL would autocast: not fp32 vs fp32"
    trainer.train()
    return {
        "losses": losses,
        "pairs_per_s": args.batch * (args.steps - WARM) / (times[-1] - times[WARM - 1]),
        "setup_s": setup,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--pairs", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="kiln/TRL rounds, alternating (median ratio reported)")
    p.add_argument("--separate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", choices=["kiln", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--order", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.side:
        root = Path(args.root)
        if args.side == "kiln":
            result = side_kiln(root, args)
        else:
            result = side_trl(root, args, json.loads(Path(args.order).read_text()))
        print("RESULT " + json.dumps(result))
        return 0

    root = Path(tempfile.mkdtemp(prefix="kiln-dpo-bench-"))
    build(root, args.pairs)
    common = [f"--steps={args.steps}", f"--batch={args.batch}", f"--lr={args.lr}", f"--threads={args.threads}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}

    def side(name: str, *extra: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, f"--side={name}", f"--root={root}", *common, *extra],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
        return json.loads(line[len("RESULT ") :])

    # Rounds alternate the sides (kiln, TRL, kiln with TRL's rows, ...): on a shared machine a burst of other work
    # then hits every side alike, and the median of the per-round ratios is what is reported.
    ratios, separate_ratios = [], []
    for r in range(args.rounds):
        kiln = side("kiln")
        (root / "order.json").write_text(json.dumps(kiln["order"]))
        trl = side("trl", f"--order={root / 'order.json'}")
        sep = side("kiln", "--separate")
        k, t, s = kiln["pairs_per_s"], trl["pairs_per_s"], sep["pairs_per_s"]
        ratios.append(k / t)
        separate_ratios.append(s / t)
        print(f"round {r + 1}: pairs/s kiln {k:.2f}  TRL {t:.2f}  ({k / t:.2f}x); "
              f"kiln with TRL's rows (share_prompt=false) {s:.2f} ({s / t:.2f}x)")  # fmt: skip
    diffs = [abs(a - b) for a, b in zip(kiln["losses"], trl["losses"], strict=False)]
    sep_diff = max(abs(a - b) for a, b in zip(kiln["losses"], sep["losses"], strict=True))
    print(f"steps {args.steps}, batch {args.batch} pairs, lr {args.lr}, {args.threads} threads, fp32")
    print(f"loss at step 1: kiln {kiln['losses'][0]:.6f}  TRL {trl['losses'][0]:.6f}  |diff| {diffs[0]:.2e}")
    print(f"loss curves: max |diff| {max(diffs):.2e} over {len(diffs)} steps; final kiln {kiln['losses'][-1]:.4f} "
          f"TRL {trl['losses'][-1]:.4f}; kiln shared vs separate rows max |diff| {sep_diff:.2e}")  # fmt: skip
    print(f"pairs/s, median of the {args.rounds} rounds' ratios: kiln / TRL {sorted(ratios)[len(ratios) // 2]:.2f}x; "
          f"kiln with TRL's rows / TRL {sorted(separate_ratios)[len(ratios) // 2]:.2f}x")  # fmt: skip
    print(f"setup (incl. reference pass): kiln {kiln['setup_s']:.1f} s  TRL {trl['setup_s']:.1f} s")
    print(f"peak RSS: kiln {kiln['maxrss_mb']:,.0f} MB  TRL {trl['maxrss_mb']:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
