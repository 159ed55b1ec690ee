"""What post-training measurably does on this CPU: DPO and GRPO on the quickstart's instruction task, and a reward
model on the hh-rlhf pairs.

    python benchmarks/posttrain_effects.py [--workspace DIR] [--part dpo grpo reward] [--rl-minutes 10]

Everything starts from the quickstart's models: DIR is a `kiln quickstart` workspace; if it has no fine-tuned
model yet, `kiln quickstart --workspace DIR --no-serve --minutes 2 --sft-minutes 12 --rl-minutes 0` runs first
(about 15 minutes; the quickstart's SFT data has word-swapped tasks and weighs the words' tokens, so its model
copies words from the prompt, which DPO and GRPO then build on). The task is the quickstart's: "Write a short
story that uses the words A, B and C.", from the bundled TinyStories, the last 48 tasks held out (never trained
on by SFT, DPO or GRPO); whether a reply follows it is checked by a program (`kiln.posttrain.word_task.uses_words`).

- dpo: `kiln dpo` from the SFT model on `word_task.preference_pairs` of the training tasks (mirrored pairs: the
  task's story vs the same story with its three words swapped for another task's, each reply chosen under the
  instruction naming its own words, so ignoring the instruction scores 0.5). Held-out preference accuracy on
  pairs made from the 48 held-out tasks only (4 swaps each, 384 pairs): before = the share where the SFT model
  gives the chosen story the higher log-probability; after = the share where DPO's implicit reward (policy minus
  reference log-prob, what `kiln dpo` logs as rewards/accuracies; 0.5 before any step) is higher for the chosen
  story, and the share where the DPO model itself gives it the higher log-probability.
- grpo: `kiln rl` (reward = the share of the three words used) from the SFT model on new word triples
  (`word_task.new_instructions`: words drawn uniformly from the training tasks' words, no training story using
  all three) for `--rl-minutes` of wall clock; the success rate (all three words used) and the share of words
  used, SFT model vs GRPO model, on the 48 held-out instructions x 4 samples (temperature 0.7, top-k 50, as the
  quickstart measures it), with three of the replies as read; with `--pass-k N`, also pass@1..N of both models from
  N samples per instruction (the SFT model's pass@k bounds what sharpening alone can reach).
- reward: `kiln reward` from the SFT model's transformer on the hh-rlhf harmless-base pairs
  (../shared/data/preference); held-out pairwise accuracy against chance (0.5) and against "the longer reply wins".

Each command is a separate process, run one after the other; its wall time and CPU time (user + system of the
child, both cores) are printed. The machine is shared: wall times vary with other work, CPU times less so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kiln.posttrain.grpo import LOSS_TYPES
from kiln.posttrain.word_task import VOCABULARIES

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "preference" / "hh-rlhf_harmless-base_test.jsonl.gz"
EVAL_SAMPLES = 4
LOG = Path("posttrain_effects.log")


def kiln(*argv: str) -> dict[str, float]:
    """Run `kiln ARGV...` in its own process; (wall s, CPU s) it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    print("$ kiln " + " ".join(argv), flush=True)
    with open(LOG, "a", encoding="utf-8") as log:  # the progress bars and logs, kept out of the report
        subprocess.run([sys.executable, "-m", "kiln", *argv], check=True, stdout=log, stderr=log)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(cpu, 1)}


def sft_model(ws: Path, sft_minutes: float) -> Path:
    """The quickstart's fine-tuned model in `ws` (the quickstart runs first when it has none)."""
    from kiln.model.checkpoint import latest_checkpoint

    chat = ws / "models" / "quickstart-chat"
    if not chat.exists() or latest_checkpoint(chat) is None:
        kiln("quickstart", f"workspace={ws}", "serve=false", "minutes=2", f"sft_minutes={sft_minutes}", "rl_minutes=0")
    return chat


def tasks() -> tuple[list, list]:
    """The quickstart's (train, held-out) instruction tasks."""
    from kiln.posttrain.word_task import make_tasks, read_tinystories
    from kiln.quickstart import assets
    from kiln.quickstart.posttrain import EVAL_TASKS

    all_tasks = make_tasks(read_tinystories(assets() / "tinystories.txt.gz"), seed=0)
    return all_tasks[:-EVAL_TASKS], all_tasks[-EVAL_TASKS:]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def last_eval(run: Path, key: str) -> float | None:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next((r[key] for r in reversed(rows) if key in r), None)


# ---------------------------------------------------------------------------------------------------------- DPO
@torch.no_grad()
def pair_logps(checkpoint: Path, pairs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probs of the chosen and rejected replies under a model, per pair (as `kiln dpo` scores them)."""
    from kiln.model.checkpoint import load_checkpoint
    from kiln.posttrain.dpo_data import pair_batch, windows
    from kiln.posttrain.dpo_loss import selected_logps
    from kiln.posttrain.pairs import Pair

    model, tok, _ = load_checkpoint(checkpoint)
    model.eval()
    ps = [Pair(prompt=(("user", p["prompt"]),), chosen=p["chosen"], rejected=p["rejected"]) for p in pairs]
    w, _, dropped = windows(tok, ps, model.config.block_size, "truncate")
    assert dropped == 0, "a held-out pair lost its reply to the context"
    out: list[list[float]] = [[], []]
    for i in range(0, len(w), 16):
        xc, yc, xr, yr, _ = pair_batch(w, np.arange(i, min(len(w), i + 16)))
        for k, (x, y) in enumerate(((xc, yc), (xr, yr))):
            keep = y != -1
            out[k] += selected_logps(model(x, logits_at=keep)[0], y, keep)[0].tolist()
    return np.array(out[0]), np.array(out[1])


def part_dpo(ws: Path, sft: Path, args) -> dict:
    from kiln.posttrain.word_task import preference_pairs

    train, held = tasks()
    data = write_jsonl(ws / "effects" / "dpo_train.jsonl", preference_pairs(train, seed=0))
    held_pairs = preference_pairs(held, seed=0, per_task=EVAL_SAMPLES)
    run = ws / "effects" / "dpo"
    cost = kiln(
        "dpo", str(sft), str(data), f"out_dir={run}", "overwrite=true", f"max_steps={args.dpo_steps}",
        "batch_size=8", f"lr={args.dpo_lr}", "beta=0.1", "warmup_steps=10", "val_fraction=0.05",
        f"eval_interval={args.dpo_steps}", "threads=2",
    )  # fmt: skip
    sft_c, sft_r = pair_logps(sft, held_pairs)
    dpo_c, dpo_r = pair_logps(run, held_pairs)
    return {
        "train_pairs": sum(1 for _ in data.open()), "held_out_pairs": len(held_pairs), "steps": args.dpo_steps,
        "lr": args.dpo_lr, **cost,
        "before_logp_acc": float(np.mean(sft_c > sft_r)),
        "after_implicit_reward_acc": float(np.mean((dpo_c - sft_c) > (dpo_r - sft_r))),
        "after_logp_acc": float(np.mean(dpo_c > dpo_r)),
        "kiln_val_pref_acc": last_eval(run, "val_pref_acc"),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- GRPO
def sample_replies(checkpoint: Path, held: list, seeds: range) -> list[list[str]]:
    """Replies to the held-out instructions, one list per seed, sampled as the quickstart samples them (temperature
    0.7, top-k 50, at most 160 tokens)."""
    from kiln.generate import SamplingParams, generate_batch
    from kiln.model.checkpoint import load_checkpoint
    from kiln.tokenizer.chat import render_chat_ids, reply_stops

    model, tok, _ = load_checkpoint(checkpoint)
    prompts = [render_chat_ids(tok, [("user", t.prompt)]) for t in held]
    stops = reply_stops(tok)
    room = model.config.block_size - max(map(len, prompts))
    out = []
    for seed in seeds:
        params = SamplingParams(
            temperature=0.7, top_k=50, max_new_tokens=min(160, room), seed=seed, stop_token_ids=stops
        )
        out.append([c.text for c in generate_batch(model, prompts, params, tokenizer=tok)])
    return out


def follow_rates(checkpoint: Path, held: list) -> dict[str, float]:
    """(all three words used, share of the words used) over the held-out instructions, EVAL_SAMPLES seeds each,
    sampled as the quickstart samples them."""
    from kiln.posttrain.word_task import uses_words, words_used

    followed = used = 0
    examples: list[str] = []
    for replies in sample_replies(checkpoint, held, range(1, EVAL_SAMPLES + 1)):
        followed += sum(uses_words(r, t.words) for r, t in zip(replies, held, strict=True))
        used += sum(words_used(r, t.words) for r, t in zip(replies, held, strict=True))
        examples = examples or [f"{t.words}: {r.strip()[:120]!r}" for r, t in zip(replies[:3], held, strict=False)]
    n = EVAL_SAMPLES * len(held)
    # A few replies as read: a reward can rise by listing words instead of writing a story (docs/benchmarks.md).
    return {"success": followed / n, "words": used / (3 * n), "samples": n, "examples": examples}


def pass_at_k(checkpoint: Path, held: list, n: int) -> dict[str, float]:
    """pass@k of the held-out instructions from n samples each (other seeds than follow_rates'), with the unbiased
    estimator of Chen et al. 2021, 1 - C(n - c, k) / C(n, k) for c successes: the share of instructions that k
    tries would follow at least once. RL that sharpens what a model already does moves pass@1 towards pass@k of
    the starting model and rarely beyond it (Yue et al. 2025), so the SFT model's pass@k bounds what a short GRPO
    run can reach; also the share of (instruction, word) pairs never used in n samples, and those words: GRPO
    gets no reward for a word its policy never writes, so they cap what it can reach (docs/benchmarks.md, round 16)."""
    from math import comb

    from kiln.posttrain.word_task import words_used

    runs = sample_replies(checkpoint, held, range(1000, 1000 + n))
    # used[i, j, s]: instruction i's word j appears in sample s; every word in one sample is a success
    used = np.array([[[words_used(run[i], [w]) == 1 for run in runs] for w in t.words] for i, t in enumerate(held)])
    never = float(np.mean(~used.any(axis=2)))
    c = used.all(axis=1).sum(axis=1)
    ks = [k for k in (1, 4, 8, 16, 32, 64) if k <= n]
    return {
        **{f"pass@{k}": round(float(np.mean([1 - comb(n - int(ci), k) / comb(n, k) for ci in c])), 3) for k in ks},
        "words_never_used": round(never, 3), "samples_each": n,
        "never_used": sorted({w for i, t in enumerate(held) for j, w in enumerate(t.words) if not used[i, j].any()}),
    }  # fmt: skip


def sft_rates(ws: Path, sft: Path, held: list, k: int) -> dict:
    """The SFT model's follow_rates (and pass@k): the same seeded samples every run, so they are computed once per
    SFT checkpoint and kept in the workspace (a few minutes saved on every GRPO run of a round; delete
    effects/sft_rates.json to measure again, after a change to decoding, say)."""
    steps = sorted((sft / "checkpoints").glob("step_*"))
    key = {"checkpoint": str(steps[-1] if steps else sft), "pass_k": k}
    cache = ws / "effects" / "sft_rates.json"
    if cache.exists() and (kept := json.loads(cache.read_text()))["key"] == key:
        return kept["rates"]
    rates = follow_rates(sft, held)
    if k:
        rates["pass_at_k"] = pass_at_k(sft, held, k)
    cache.write_text(json.dumps({"key": key, "rates": rates}))
    return rates


def part_grpo(ws: Path, sft: Path, args) -> dict:
    train, held = tasks()
    from kiln.posttrain.word_task import new_instructions

    # New word triples, not the fine-tuning tasks' prompts: see new_instructions.
    prompts = new_instructions(train, 4000, seed=0, vocabulary=args.rl_vocabulary)
    data = write_jsonl(ws / "effects" / "rl_prompts.jsonl", prompts)
    run = ws / "effects" / "rl"
    cost = kiln(
        "rl", str(sft), str(data), f"out_dir={run}", "overwrite=true", f"reward={args.rl_reward}",
        f"group={args.rl_group}", f"batch_size={args.rl_batch}", f"updates_per_batch={args.rl_updates}",
        f"max_new_tokens={args.rl_tokens}", f"lr={args.rl_lr}",
        f"temperature={args.rl_temperature}", f"kl_beta={args.rl_kl}",
        f"scale_rewards={str(not args.rl_no_scale).lower()}", f"loss_type={args.rl_loss_type}",
        "max_steps=1000000",
        f"max_minutes={args.rl_minutes}", "eval_interval=1000000", "log_interval=1", "eval_batches=2", "threads=2",
        *args.rl_set,
    )  # fmt: skip
    steps = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    before, after = sft_rates(ws, sft, held, args.pass_k), follow_rates(run, held)
    if args.pass_k:
        after["pass_at_k"] = pass_at_k(run, held, args.pass_k)
    return {
        "steps": steps, "reward": args.rl_reward, "lr": args.rl_lr, "group": args.rl_group, "batch": args.rl_batch,
        "updates_per_batch": args.rl_updates,
        "max_new_tokens": args.rl_tokens, "vocabulary": args.rl_vocabulary, "temperature": args.rl_temperature,
        "kl_beta": args.rl_kl,
        "scale_rewards": not args.rl_no_scale, "loss_type": args.rl_loss_type, "settings": args.rl_set, **cost,
        "sft": before, "grpo": after,
        "gain_points": round(100 * (after["success"] - before["success"]), 1),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- reward
def part_reward(ws: Path, sft: Path, args) -> dict:
    from kiln.posttrain.conversations import ConversationError
    from kiln.posttrain.pairs import read_pairs, to_pair
    from kiln.posttrain.sft_data import held_out

    # A few hh-rlhf records have two assistant turns in a row, which kiln rejects (with the line number): keep
    # the well-formed ones, counted.
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    good = []
    for n, r in enumerate(records, start=1):
        try:
            to_pair(r, f"{HH}:{n}")
            good.append(r)
        except ConversationError:
            pass
    data = write_jsonl(ws / "effects" / "hh_pairs.jsonl", good)
    run = ws / "effects" / "reward"
    cost = kiln(
        "reward", str(sft), str(data), f"out_dir={run}", "overwrite=true", "batch_size=8", f"lr={args.rm_lr}",
        f"max_steps={args.rm_steps}", "warmup_steps=10", "val_fraction=0.1", f"eval_interval={args.rm_steps}",
        "eval_batches=1000", "threads=2",
    )  # fmt: skip
    # The same held-out split kiln reward used (by each pair's text), for the baseline "the longer reply wins".
    val = [p for p in read_pairs([str(data)]) if held_out(p.key, 0.1)]
    longer = float(np.mean([len(p.chosen) > len(p.rejected) for p in val]))
    return {
        "pairs": len(records), "well_formed": len(good), "held_out": len(val), "steps": args.rm_steps,
        "lr": args.rm_lr, **cost,
        "held_out_acc": last_eval(run, "val_pair_acc"), "chance": 0.5, "longer_reply_acc": longer,
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workspace", type=Path, default=Path("kiln-quickstart-effects"))
    p.add_argument("--part", nargs="+", choices=["dpo", "grpo", "reward"], default=["dpo", "grpo", "reward"])
    p.add_argument("--sft-minutes", type=float, default=12.0, help="the quickstart's SFT, when DIR has no SFT model")
    p.add_argument("--dpo-steps", type=int, default=400)
    p.add_argument("--dpo-lr", type=float, default=2e-4)
    p.add_argument("--rl-minutes", type=float, default=10.0)
    p.add_argument("--rl-lr", type=float, default=2e-4)
    p.add_argument("--rl-reward", default="words", help="kiln rl reward: words, all_words, words+repetition, ...")
    p.add_argument("--rl-loss-type", default="grpo", choices=LOSS_TYPES, help="kiln rl loss_type")
    p.add_argument("--rl-group", type=int, default=8)
    p.add_argument("--rl-batch", type=int, default=4, help="prompts per step")
    p.add_argument("--rl-updates", type=int, default=1, help="kiln rl updates_per_batch")
    p.add_argument("--rl-tokens", type=int, default=64)
    p.add_argument("--rl-vocabulary", default="instructions", choices=VOCABULARIES,
                   help="where the RL prompts' words come from (word_task.new_instructions)")  # fmt: skip
    p.add_argument("--rl-temperature", type=float, default=1.0)
    p.add_argument("--rl-kl", type=float, default=0.0)
    p.add_argument("--rl-no-scale", action="store_true", help="kiln rl scale_rewards=false (Dr. GRPO's advantages)")
    p.add_argument("--rl-set", action="append", default=[], metavar="KEY=VALUE", help="more kiln rl settings")
    p.add_argument("--pass-k", type=int, default=0, help="also pass@k from this many samples each (0 = off)")
    p.add_argument("--rm-steps", type=int, default=100)
    p.add_argument("--rm-lr", type=float, default=1e-4)
    args = p.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    torch.set_num_threads(2)
    ws = args.workspace.resolve()
    global LOG
    LOG = ws / "effects.log"
    ws.mkdir(parents=True, exist_ok=True)
    sft = sft_model(ws, args.sft_minutes)
    print(f"machine: {os.cpu_count()} CPUs; SFT model {sft}")
    for part in args.part:
        result = {"dpo": part_dpo, "grpo": part_grpo, "reward": part_reward}[part](ws, sft, args)
        print(f"RESULT {part} " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
