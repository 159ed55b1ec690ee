"""Prefix sharing in `kiln dpo` and `kiln reward`: the prompt once per pair against twice (TRL's rows), one process.

    python benchmarks/shared_prompt.py [--batches 10] [--rounds 3]

Both layouts run in the same process on the same batches, alternating round by round (separate rows, then shared
rows), so this VM's minute-to-minute speed changes hit both alike; the work timed is one forward and backward of
each batch (the optimizer step is the same for both and left out). Checked equal to float rounding before timing:
DPO's summed log-probs of every chosen and rejected reply (the word-task pairs of benchmarks/dpo.py, short
prompts), and a reward model's rewards (HH-RLHF harmless-base pairs from ../shared/data, multi-turn prompts, cut
to the 256-token context; not run, with a note, where the folder is absent). Model: benchmarks/dpo.py's
random-init Llama-shaped checkpoint (4 layers x 256, 2,048-token BPE), fp32.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "preference" / "hh-rlhf_harmless-base_test.jsonl.gz"


def word_pairs(root: Path, n: int) -> Path:
    from posttrain_model import build_base

    _, _, tasks = build_base(root)
    path = root / "word_pairs.jsonl"
    rows = [{"prompt": t.prompt, "chosen": t.story, "rejected": o.story} for t, o in itertools.pairwise(tasks[: n + 1])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def hh_pairs(root: Path, n: int) -> Path:
    from kiln.posttrain.conversations import ConversationError
    from kiln.posttrain.pairs import to_pair

    good = []
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        for k, line in enumerate(f, start=1):
            record = json.loads(line)
            try:  # a few records have two assistant turns in a row, which kiln refuses: keep the well-formed
                to_pair(record, f"{HH}:{k}")
            except ConversationError:
                continue
            good.append(record)
            if len(good) == n:
                break
    path = root / "hh_pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
    return path


def compare(name: str, trainer, batches: list, score, rounds: int, extra: int) -> None:
    """score(batch) -> a tensor of per-sequence numbers whose sum is backpropagated."""
    from kiln.posttrain.shared_prompt import share_prompts

    def slots(share: bool) -> int:
        if share:
            return sum(share_prompts(*b[:4], extra=extra).x.numel() for b in batches)
        return sum(2 * b[0].numel() for b in batches)

    def run(share: bool) -> float:
        trainer.cfg.share_prompt = share
        t0 = time.perf_counter()
        for b in batches:
            score(b).sum().backward()
        return time.perf_counter() - t0

    with torch.no_grad():
        diffs = []
        for b in batches:
            trainer.cfg.share_prompt = False
            a = score(b)
            trainer.cfg.share_prompt = True
            diffs.append(float(((a - score(b)).abs() / a.abs().clamp(min=1e-3)).max()))
    run(False), run(True)  # warm-up, both
    times = [(run(False), run(True)) for _ in range(rounds)]
    ratios = [a / b for a, b in times]
    print(f"{name}: {len(batches)} batches of {trainer.cfg.batch_size} pairs; token slots (with padding) "
          f"separate {slots(False):,}, shared {slots(True):,} ({slots(False) / slots(True):.2f}x fewer); "
          f"max relative difference {max(diffs):.1e}")  # fmt: skip
    for r, (a, b) in enumerate(times, start=1):
        print(f"  round {r}: forward+backward separate rows {a:.2f} s, shared prompt {b:.2f} s ({a / b:.2f}x)")
    print(f"  median {statistics.median(ratios):.2f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from kiln.posttrain.dpo_config import DPOConfig
    from kiln.posttrain.dpo_trainer import DPOTrainer
    from kiln.posttrain.reward import RewardConfig, RewardTrainer
    from kiln.train import distributed as D

    root = Path(tempfile.mkdtemp(prefix="kiln-shared-prompt-"))
    info, device = D.init_distributed("cpu")
    common = dict(
        checkpoint=str(root / "base"), batch_size=4, precision="fp32", device="cpu", threads=args.threads,
        val_fraction=0.02, overwrite=True, peak_tflops=1.0,
    )  # fmt: skip
    data = word_pairs(root, 8 * args.batches)
    cfg = DPOConfig(inputs=[str(data)], out_dir=root / "dpo", **common).validate()
    dpo = DPOTrainer(cfg, info, device, lambda _m: None)
    batches = [dpo.loader.next_batch() for _ in range(args.batches)]
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}")
    compare("kiln dpo, word-task pairs", dpo, batches, lambda b: dpo.pair_logps(dpo.raw, *b[:4])[0], args.rounds, 0)

    if not HH.exists():
        print(f"kiln reward on HH-RLHF: not run ({HH} is absent)")
        return 0
    data = hh_pairs(root, 8 * args.batches)
    cfg = RewardConfig(inputs=[str(data)], out_dir=root / "reward", **common).validate()
    rm = RewardTrainer(cfg, info, device, lambda _m: None)
    # The head starts at zero (every reward 0): give it values, or the equality check below would check nothing.
    torch.nn.init.normal_(rm.raw.score.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    batches = [rm.loader.next_batch() for _ in range(args.batches)]
    compare("kiln reward, HH-RLHF pairs", rm, batches, lambda b: torch.cat(rm.pair_rewards(b)), args.rounds, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
