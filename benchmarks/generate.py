"""Decode speed: kiln with and without its KV cache vs Hugging Face transformers, same weights, one run.

The gpt2 (124M) shape with random weights, copied into transformers' GPT2LMHeadModel; greedy decoding
in fp32 from a 32-token prompt for 64 new tokens at batch 1 and 8. Greedy on identical weights must
give identical tokens, so the script also reports how many sequences match exactly.

    python benchmarks/generate.py [--new-tokens 64] [--prompt-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from kiln.generate import SamplingParams, generate_batch
from kiln.model import build, cpu_fast
from kiln.model.hf import to_hf_gpt2


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-no-cache", action="store_true")
    args = ap.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = build("gpt2").eval()
    hf = GPT2LMHeadModel(GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_gpt2(model.state_dict(), 12), strict=False)
    assert not [k for k in missing if not k.endswith("attn.bias")] and not unexpected, (missing, unexpected)

    n = args.new_tokens
    greedy = SamplingParams(temperature=0, max_new_tokens=n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    shape = f"prompt {args.prompt_tokens} tokens, {n} new tokens, best of {args.repeats}"
    print(f"gpt2 shape (124M), fp32, greedy, {shape}")
    print(f"{'batch':>5} {'engine':<34} {'tokens/s':>9} {'vs HF':>7}  tokens match HF")
    for b in args.batches:
        prompts = torch.randint(0, 50257, (b, args.prompt_tokens), generator=torch.Generator().manual_seed(b))
        mask = torch.ones_like(prompts)

        def run_hf(prompts=prompts, mask=mask):
            with torch.inference_mode():
                return hf.generate(
                    prompts, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
                )[:, args.prompt_tokens :].tolist()

        def run_kiln(use_cache: bool, prompts=prompts):
            return [c.tokens for c in generate_batch(model, prompts.tolist(), greedy, use_cache=use_cache)]

        run_hf()  # warm up both (first calls allocate and pack)
        run_kiln(True)
        t_hf, ref = best_of(run_hf, args.repeats)
        rows = [("transformers GPT2LMHeadModel.generate", t_hf, ref)]
        rows.append(("kiln, KV cache", *best_of(lambda: run_kiln(True), args.repeats)))
        cpu_fast.enabled = False
        rows.append(("kiln, KV cache, no oneDNN packing", *best_of(lambda: run_kiln(True), args.repeats)))
        cpu_fast.enabled = True
        if not args.skip_no_cache:
            rows.append(("kiln, no cache (recompute)", *best_of(lambda: run_kiln(False), 1)))
        for name, t, toks in rows:
            match = sum(a == r for a, r in zip(toks, ref, strict=True))
            print(f"{b:>5} {name:<34} {b * n / t:>9.1f} {t_hf / t:>6.2f}x  {match}/{b}")


if __name__ == "__main__":
    main()
