"""`kiln eval` against lm-evaluation-harness 0.4's HF backend: same model, same task files, items/s and agreement.

    python benchmarks/eval.py [--items 50] [--tasks arc_easy,piqa,...] [--data-dir ../shared/data/eval/llm-foundry]
                              [--layers 4 --embd 256 --ctx 512] [--hf-batch 16] [--threads 2] [--rounds 1]
                              [--gsm8k-items 20 --gsm8k-tokens 64 --gen-batch 16]

The model: a GPT-2 built with transformers (random init with std 0.2, so log-likelihoods are far from ties; shape
from the flags), and the same weights in kiln through kiln.model.hf.from_hf_gpt2; GPT-2's real vocabulary
(../shared/data/tokenizers/gpt2) on both sides. The reference: `lm_eval.simple_evaluate` with `HFLM(pretrained=
model, tokenizer=...)`, batch size --hf-batch, on the task configs of kiln.eval.harness.harness_task (the same
JSONL files, read through the harness's `json` dataset loader), fully offline. kiln: kiln.eval.evaluate_task on
the same items. Both run in this process with the same torch threads; the harness's time includes its own request
building and metrics, as kiln's includes tokenisation and metrics; dataset loading is outside both clocks (the
harness's JSON load is timed separately and reported). A warm-up task (10 items of COPA) runs on each side first.
With --rounds R each task runs R times on each side, alternating, and the fastest round of each side counts: on a
shared machine a burst of other jobs lands on one side's round at random, and the minimum is the least disturbed.

Agreement: per item, the same acc and acc_norm decisions; log-likelihoods within 1e-3.

GSM8K (--gsm8k-items N, 0 = skip): the harness's own gsm8k task (kiln.eval.harness.harness_task: its YAML's prompt,
stops, filters, zero-shot, max_gen_toks = --gsm8k-tokens) on the HF backend's batched greedy `generate`, against
`kiln eval`'s GSM8K (kiln's continuous batcher, --gen-batch rows); agreement = identical generated text and
identical strict / flexible extracted answers per item.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the harness's progress bars would bury the table

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def build(layers: int, embd: int, ctx: int):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from kiln.model import GPT
    from kiln.model.hf import from_hf_gpt2, gpt2_config
    from kiln.tokenizer import get_tokenizer
    from kiln.tokenizer.hf_export import export_hf

    tok = get_tokenizer(SHARED / "tokenizers" / "gpt2")
    path = export_hf(tok, Path(tempfile.mkdtemp()) / "tokenizer.json")
    hf_tok = GPT2TokenizerFast(tokenizer_file=str(path))
    torch.manual_seed(0)
    heads = max(1, embd // 64)
    hf = GPT2LMHeadModel(
        GPT2Config(n_layer=layers, n_head=heads, n_embd=embd, n_positions=ctx, initializer_range=0.2)
    ).eval()
    model = GPT(gpt2_config(layers, heads, embd, block_size=ctx)).eval()
    model.load_state_dict(from_hf_gpt2(hf.state_dict(), layers))
    return hf, hf_tok, model, tok


def run_harness(lm, tasks, limit, max_gen_toks=256):
    from lm_eval import simple_evaluate

    from kiln.eval.harness import harness_task

    configs = [harness_task(t.name, t.path, t.kind, max_gen_toks) for t in tasks]
    t0 = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=configs, limit=limit, log_samples=True, bootstrap_iters=0, verbosity="ERROR")
    return time.perf_counter() - t0, {n: sorted(s, key=lambda x: x["doc_id"]) for n, s in out["samples"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--tasks", default="arc_easy,arc_challenge,piqa,winogrande,openbook_qa,copa,lambada")
    ap.add_argument("--data-dir", default=None, help="full llm-foundry files (default: kiln's bundled 50-item slices)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--hf-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="time each task this many times per side, keep the fastest")
    ap.add_argument("--gsm8k-items", type=int, default=20)
    ap.add_argument("--gsm8k-tokens", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    from lm_eval.models.huggingface import HFLM

    from kiln.eval.evaluate import evaluate_task
    from kiln.eval.tasks import resolve_task

    hf, hf_tok, model, tok = build(args.layers, args.embd, args.ctx)
    tasks = [resolve_task(t, args.data_dir, args.items) for t in args.tasks.split(",")]
    lm = HFLM(pretrained=hf, tokenizer=hf_tok, batch_size=args.hf_batch, max_length=args.ctx)
    warm = [resolve_task("copa", None, 10)]
    run_harness(lm, warm, 10)
    evaluate_task(model, tok, warm[0])

    print(f"model: GPT-2 shape, {args.layers} layers, {args.embd} wide, context {args.ctx}, vocab 50257; "
          f"{args.threads} threads; harness batch {args.hf_batch}")  # fmt: skip
    print(f"{'task':<15}{'items':>6}{'kiln it/s':>11}{'lm-eval it/s':>14}{'ratio':>7}{'acc':>7}{'acc_norm':>9}"
          f"{'same acc':>10}{'same norm':>11}{'max |dll|':>11}")  # fmt: skip
    tot_k = tot_h = 0.0
    n_items = same_all = 0
    for task in tasks:
        k_sec = h_sec = float("inf")
        for _ in range(args.rounds):  # sides alternate; the fastest round of each counts (timeit's rule)
            t0 = time.perf_counter()
            ours = evaluate_task(model, tok, task)
            k_sec = min(k_sec, time.perf_counter() - t0)
            h_round, ref = run_harness(lm, [task], args.items)
            h_sec = min(h_sec, h_round)
        samples = ref[task.name]
        same_acc = same_norm = 0
        dmax = 0.0
        for d, s in zip(ours.decisions, samples, strict=True):
            ref_lls = [ll for ll, _ in s["filtered_resps"]]
            lls = d["loglik"] if isinstance(d["loglik"], list) else [d["loglik"]]
            dmax = max(dmax, *(abs(a - b) for a, b in zip(lls, ref_lls, strict=True)))
            same_acc += d["acc"] == s["acc"]
            same_norm += d.get("acc_norm") == s.get("acc_norm")
        n = len(task.items)
        tot_k, tot_h, n_items, same_all = tot_k + k_sec, tot_h + h_sec, n_items + n, same_all + min(same_acc, same_norm)
        print(f"{task.name:<15}{n:>6}{n / k_sec:>11.1f}{n / h_sec:>14.1f}{h_sec / k_sec:>6.1f}x"
              f"{ours.scores['acc']:>7.3f}{ours.scores.get('acc_norm', float('nan')):>9.3f}"
              f"{same_acc:>7}/{n}{same_norm:>8}/{n}{dmax:>11.2e}")  # fmt: skip
        sys.stdout.flush()
    print(f"{'all':<15}{n_items:>6}{n_items / tot_k:>11.1f}{n_items / tot_h:>14.1f}{tot_h / tot_k:>6.1f}x"
          f"   identical decisions on {same_all}/{n_items} items")  # fmt: skip
    if args.gsm8k_items:
        gsm8k(model, tok, lm, args)


def gsm8k(model, tok, lm, args) -> None:
    """Greedy GSM8K on both sides: items/s, identical generations and extracted answers."""
    from kiln.eval.evaluate import evaluate_task
    from kiln.eval.generation_settings import GenerationSettings
    from kiln.eval.tasks import resolve_task

    task = resolve_task("gsm8k", None, args.gsm8k_items)
    settings = GenerationSettings(max_new_tokens=args.gsm8k_tokens, max_batch=args.gen_batch)
    k_sec = h_sec = float("inf")
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        ours = evaluate_task(model, tok, task, generation=settings)
        k_sec = min(k_sec, time.perf_counter() - t0)
        h_round, ref = run_harness(lm, [task], args.gsm8k_items, args.gsm8k_tokens)
        h_sec = min(h_sec, h_round)
    strict = [s for s in ref[task.name] if s["filter"] == "strict-match"]
    flexible = [s for s in ref[task.name] if s["filter"] == "flexible-extract"]
    same_text = sum(d["responses"] == [s["resps"][0][0]] for d, s in zip(ours.decisions, strict, strict=True))
    same_answer = sum(
        d["extracted_strict"] == [s["filtered_resps"][0]] and d["extracted_flexible"] == [f["filtered_resps"][0]]
        for d, s, f in zip(ours.decisions, strict, flexible, strict=True)
    )
    n = len(task.items)
    print(f"{'gsm8k (gen)':<15}{n:>6}{n / k_sec:>11.2f}{n / h_sec:>14.2f}{h_sec / k_sec:>6.1f}x"
          f"   greedy, {args.gsm8k_tokens} new tokens max: identical text {same_text}/{n}, "
          f"identical extracted answers {same_answer}/{n}")  # fmt: skip


if __name__ == "__main__":
    main()
