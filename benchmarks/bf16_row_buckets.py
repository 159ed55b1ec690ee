"""A bf16 LM head on the CPU with a new number of scored rows every step, as fine-tuning has (the assistant's
tokens, a reply's tokens), against kiln's `logits_at` path, which pads the rows to one of a few sizes
(`kiln.model.gpt.bucket_rows`).

Why: a bf16 matmul on the CPU runs through oneDNN, which compiles a kernel for each new shape and keeps it; a
fine-tuning run that scored a new row count every step grew by gigabytes (a 20-minute SFT of the quickstart's
model reached 7.5 GB of resident memory) and slowed down. Each side runs in its own process (resident memory is a
process's), the same row counts in the same order, forward and backward in bf16 autocast, and the two sides'
logits are checked equal. Where the CPU has no native bf16 the numbers still print; the gap may be smaller.

    python benchmarks/bf16_row_buckets.py [--steps 200] [--dim 384] [--vocab 4096]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def side(name: str, steps: int, dim: int, vocab: int) -> dict:
    import torch
    import torch.nn.functional as F

    from kiln.model.gpt import bucket_rows

    torch.manual_seed(0)
    torch.set_num_threads(2)
    w = torch.randn(vocab, dim, requires_grad=True)

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    start, t0, check = rss_mb(), time.perf_counter(), 0.0
    for i in range(steps):
        n = 1500 + 7 * i  # a new row count every step
        x = torch.randn(n, dim, generator=torch.Generator().manual_seed(i), requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rows = F.pad(x, (0, 0, 0, bucket_rows(n) - n)) if name == "kiln" else x
            logits = (rows @ w.t())[:n]
        logits.float().sum().backward()
        check += float(logits[:3].float().sum())
    return {"s": time.perf_counter() - t0, "rss_growth_mb": rss_mb() - start, "check": check}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--side", choices=["plain", "kiln"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        print(json.dumps(side(a.side, a.steps, a.dim, a.vocab)))
        return 0
    import torch

    from kiln.model.inference_dtype import resolve

    native = resolve("auto", torch.device("cpu")) == torch.bfloat16
    print(f"{a.steps} steps of a ({1500}..{1500 + 7 * (a.steps - 1)}) x {a.dim} @ {a.dim} x {a.vocab} bf16 matmul, "
          f"forward and backward; CPU bf16 native: {native}")  # fmt: skip
    out = {}
    for name in ("plain", "kiln"):
        cmd = [sys.executable, __file__, "--side", name, "--steps", str(a.steps), "--dim", str(a.dim),
               "--vocab", str(a.vocab)]  # fmt: skip
        out[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        r = out[name]
        print(f"{name:>5}: {r['s']:6.1f} s, resident memory +{r['rss_growth_mb']:,.0f} MB")
    same = abs(out["plain"]["check"] - out["kiln"]["check"]) <= 1e-3 * max(1.0, abs(out["plain"]["check"]))
    print(f"logits equal (sum of the first rows): {same}")
    k, pl = out["kiln"], out["plain"]
    print(f"kiln / plain: {pl['s'] / k['s']:.2f}x the speed, {k['rss_growth_mb']:,.0f} MB of growth against "
          f"{pl['rss_growth_mb']:,.0f} MB")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
