"""bf16 on the CPU with a new batch width at every call, against kiln, which pads to one of a few widths
(`kiln.model.gpt.bucket_length`): fine-tuning steps (SFT, DPO, GRPO and reward batches are as wide as their
longest row; kiln's forward right-pads them) and prefills (every prompt length is new; kiln's engine left-pads).

Why: a bf16 matmul on the CPU runs through oneDNN, which compiles a kernel for each new shape and keeps it; every
layer of a batch of a new width meets new shapes, so a fine-tuning run grew by tens of MB a step and slowed down.
The same model (the quickstart's shape, 384 wide, 6 layers, vocabulary 4,096) and the same inputs in the same
order on both sides, each side in its own process (resident memory is a process's); the plain side is kiln with
`model.bucket_shapes = False`, and each side's first layer is checked to have seen the widths it should.
- train: batch 16 x 96..256 tokens, forward and backward in bf16 autocast, the loss over about half the
  positions (the reply's tokens, `logits_at`); the two sides' losses are checked equal (bf16: to 1%).
- prefill: a bf16 model generates one token after a prompt of a new length each time (16..255 tokens, batch 1,
  the server's join); the two sides' top-5 log-probs are checked equal to bf16's rounding, and the tokens equal
  wherever the top two are not a near tie (a random model has many).
Where the CPU has no native bf16 the numbers still print; the gap may be smaller.

    python benchmarks/bf16_width_buckets.py [--steps 80] [--batch 16] [--prompts 120]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def model_and_widths(bucket: bool) -> tuple:
    import torch

    from kiln.model import GPT, GPTConfig

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = GPT(GPTConfig(vocab_size=4096, block_size=256, n_layer=6, n_head=6, n_embd=384))
    model.bucket_shapes = bucket
    seen: list[int] = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    return model, seen


def train_side(name: str, steps: int, batch: int) -> dict:
    import torch
    import torch.nn.functional as F

    from kiln.model.gpt import bucket_length

    model, seen = model_and_widths(name == "kiln")
    gen = torch.Generator().manual_seed(1)
    widths = torch.randint(96, 257, (steps,), generator=gen).tolist()
    losses, start, t0 = [], 0.0, 0.0
    for i, t in enumerate(widths):
        if i == 5:  # after a warm-up, so both sides' first kernels and buffers are counted out
            start, t0 = rss_mb(), time.perf_counter()
        x = torch.randint(0, 4096, (batch, t), generator=gen)
        y = torch.randint(0, 4096, (batch, t), generator=gen)
        at = torch.rand(batch, t, generator=gen) < 0.5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = model(x, logits_at=at)
        loss = F.cross_entropy(logits.float(), y[at])
        loss.backward()
        model.zero_grad(set_to_none=True)
        losses.append(float(loss))
    expected = widths if name == "plain" else [min(bucket_length(t), 256) for t in widths]
    assert seen == expected, "the first layer saw other widths than this side is for"
    return {"s": time.perf_counter() - t0, "rss_growth_mb": rss_mb() - start, "check": losses,
            "widths": len(set(seen))}  # fmt: skip


def prefill_side(name: str, prompts: int) -> dict:
    import torch

    from kiln.generate import SamplingParams, generate_batch

    model, seen = model_and_widths(name == "kiln")
    model.to(torch.bfloat16).eval()
    gen = torch.Generator().manual_seed(2)
    lengths = torch.randperm(240, generator=gen)[:prompts].add(16).tolist()  # distinct lengths, 16..255
    tokens, start, t0 = [], 0.0, 0.0
    for i, n in enumerate([16, 17, 18, 19, 20, *lengths]):  # five warm-up prompts, not counted
        if i == 5:
            start, t0 = rss_mb(), time.perf_counter()
        prompt = torch.randint(0, 4096, (n,), generator=gen).tolist()
        c = generate_batch(model, [prompt], SamplingParams(temperature=0, max_new_tokens=1, logprobs=5))[0]
        tokens.append([c.tokens[0], c.top[0]])
    return {"s": time.perf_counter() - t0, "rss_growth_mb": rss_mb() - start, "check": tokens,
            "widths": len({w for w in seen if w > 1})}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompts", type=int, default=120)
    p.add_argument("--side", choices=["plain", "kiln"], help=argparse.SUPPRESS)
    p.add_argument("--part", choices=["train", "prefill"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        r = train_side(a.side, a.steps, a.batch) if a.part == "train" else prefill_side(a.side, a.prompts)
        print(json.dumps(r))
        return 0
    import torch

    from kiln.model.inference_dtype import resolve

    print(f"CPU bf16 native: {resolve('auto', torch.device('cpu')) == torch.bfloat16}; a 384-wide 6-layer model")
    ok = True
    for part, what in (
        (
            "train",
            f"{a.steps} fine-tuning steps (5 of them warm-up) of batch {a.batch} x 96..256 tokens, bf16 autocast",
        ),
        ("prefill", f"{a.prompts} prompts of new lengths 16..255 (5 more warm-up), bf16 weights, one token each"),
    ):
        print(f"{part}: {what}")
        out = {}
        for name in ("plain", "kiln"):
            cmd = [sys.executable, __file__, "--side", name, "--part", part, "--steps", str(a.steps), "--batch",
                   str(a.batch), "--prompts", str(a.prompts)]  # fmt: skip
            out[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            r = out[name]
            print(f"  {name:>5}: {r['s']:6.1f} s, {r['widths']} widths, resident memory +{r['rss_growth_mb']:,.0f} MB")
        k, pl = out["kiln"], out["plain"]
        if part == "train":
            worst = max(abs(x - y) / abs(y) for x, y in zip(k["check"], pl["check"], strict=True))
            same = worst <= 1e-2  # bf16: other kernels round differently; the losses agree to under 1%
            print(f"  losses equal (largest relative difference {worst:.1e}, bf16): {same}")
        else:  # bf16 rounds differently in other kernels: a near tie may go either way, nothing else may change
            worst, decided, equal = 0.0, 0, 0
            for (tk, topk), (tp, topp) in zip(k["check"], pl["check"], strict=True):
                lk, lp = dict(map(tuple, topk)), dict(map(tuple, topp))
                worst = max([worst, *(abs(lk[i] - lp[i]) for i in lk.keys() & lp.keys())])
                gap = topp[0][1] - topp[1][1]
                decided += gap > 0.1
                equal += tk == tp
                if gap > 0.1 and tk != tp:
                    worst = float("inf")
            same = worst <= 0.05
            print(f"  tokens equal {equal}/{len(pl['check'])}, all {decided} where the top two differ by > 0.1 nats; "
                  f"top-5 log-probs within {worst:.3f} nats (bf16): {same}")  # fmt: skip
        print(f"  kiln / plain: {pl['s'] / k['s']:.2f}x the speed, {k['rss_growth_mb']:,.0f} MB of growth against "
              f"{pl['rss_growth_mb']:,.0f} MB")  # fmt: skip
        ok = ok and same
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
