"""kiln rl vs TRL's GRPOTrainer: GRPO steps on the same Llama-shaped model, prompts and settings, in one run on
this CPU.

    python benchmarks/grpo.py [--steps 8] [--prompts 4] [--group 8] [--new-tokens 64] [--rounds 1]

What is the same: the model (a random-init kiln checkpoint exported with `kiln export hf`: identical weights), the
prompt token ids (kiln renders each word-task instruction with its chat template; TRL gets those ids through
`_tokenize_prompts`, so its own tokenisation is skipped), the reward (kiln's `words`: the share of the three
words used, the same Python function on both sides), GRPO's loss (TRL's loss_type="grpo": per-completion token
mean, then the mean over completions; advantages scaled by the group's std; clip 0.2; beta 0, so no reference
model on either side; one update per sampled batch), sampling (temperature 1.0, no top-k/top-p, at most
--new-tokens per completion, stopping at <|im_end|>), AdamW (lr, betas, eps, no weight decay), constant
schedule, clipping at 1.0, fp32, threads, and one process per side.

What differs: the draws. Sampling cannot give equal outputs on two implementations, so the check is that the work
is equal in size: each side prints the mean completion length and the mean reward of its steps (a random-init
model rarely samples <|im_end|>, so nearly every completion runs to --new-tokens on both sides). The prompts are
drawn in each side's own order (same set, same count per step). Throughput is completion tokens per second and
seconds per step over the steps after the first two (setup and warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

WARM = 2


def build(root: Path, n_prompts: int) -> None:
    """The shared base model, its HF export, and word-task prompts with their words."""
    from posttrain_model import build_base

    _, _, tasks = build_base(root)
    with (root / "prompts.jsonl").open("w", encoding="utf-8") as f:
        for t in tasks[:n_prompts]:
            f.write(json.dumps({"prompt": t.prompt, "words": list(t.words)}) + "\n")


def kiln_config(root: Path, args):
    from kiln.posttrain.rl import RLConfig

    return RLConfig(
        checkpoint=str(root / "base"), inputs=[str(root / "prompts.jsonl")], out_dir=root / "kiln",
        reward="words", group=args.group, batch_size=args.prompts, max_new_tokens=args.new_tokens, temperature=1.0,
        clip=0.2, updates_per_batch=1, kl_beta=0.0, scale_rewards=True, max_steps=args.steps, lr=args.lr,
        warmup_steps=0, schedule="constant", weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=1.0,
        precision="fp32", device="cpu", log_interval=1, eval_interval=10**6, eval_batches=1, val_fraction=0.01,
        seed=0, threads=args.threads, overwrite=True,
        peak_tflops=1.0,  # no MFU probe (a timed matmul at setup): TRL reports no MFU
    )  # fmt: skip


def side_kiln(root: Path, args) -> dict:
    from kiln.posttrain.rl import RLTrainer
    from kiln.train import distributed as D

    cfg = kiln_config(root, args)
    cfg.validate()
    info, device = D.init_distributed("cpu")
    t0 = time.perf_counter()
    trainer = RLTrainer(cfg, info, device, lambda _m: None)
    setup = time.perf_counter() - t0
    trainer.fit()
    rows = [json.loads(line) for line in (root / "kiln" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "completion_length" in r]
    times = [r["elapsed_s"] for r in rows]
    lengths = [r["completion_length"] for r in rows]
    return result(args, times, lengths, [r["reward/mean"] for r in rows], setup)


def result(args, times: list[float], lengths: list[float], rewards: list[float], setup: float) -> dict:
    """Rates over the steps after WARM: seconds per step and completion tokens per second."""
    span = times[-1] - times[WARM - 1]
    completions = args.prompts * args.group
    tokens = sum(lengths[WARM:]) * completions
    return {
        "s_per_step": span / (len(times) - WARM), "tokens_per_s": tokens / span, "setup_s": setup,
        "mean_length": sum(lengths) / len(lengths), "mean_reward": sum(rewards) / len(rewards), "steps": len(times),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def side_trl(root: Path, args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from kiln.model.checkpoint import load_checkpoint
    from kiln.posttrain.rl_data import read_prompts
    from kiln.posttrain.rl_rewards import words_reward
    from kiln.tokenizer.chat import render_chat_ids, stop_token

    _, tok, _ = load_checkpoint(root / "base")
    records = read_prompts([root / "prompts.jsonl"])
    ids = {r["prompt"]: render_chat_ids(tok, r["prompt_turns"]) for r in records}
    dataset = Dataset.from_list([{"prompt": r["prompt"], "words": r["words"]} for r in records])
    times: list[float] = []
    lengths: list[float] = []
    rewards: list[float] = []

    def reward(prompts, completions, words, **_):  # kiln's `words` reward on the decoded completion
        out = [words_reward({"words": w}, c) for c, w in zip(completions, words, strict=True)]
        rewards.append(sum(out) / len(out))
        return out

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    class KilnPrompts(GRPOTrainer):
        def _tokenize_prompts(self, prompts):  # kiln's rendered ids, as kiln's side samples from
            return [ids[p] for p in prompts], None, {}

        def _generate(self, prompts):
            out = super()._generate(prompts)
            completion_ids = out[1]
            lengths.append(sum(map(len, completion_ids)) / len(completion_ids))
            return out

    im_end = stop_token(tok)
    config = GRPOConfig(
        output_dir=str(root / "trl"), per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.new_tokens, max_steps=args.steps,
        learning_rate=args.lr, beta=0.0, epsilon=0.2, loss_type="grpo", scale_rewards="group", num_iterations=1,
        temperature=1.0, top_p=1.0, top_k=0, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, seed=0, disable_tqdm=True,
        bf16=False,  # TRL's default is True, which autocasts even a CPU run to bf16: fp32 on both sides
        generation_kwargs={"eos_token_id": im_end},
    )  # fmt: skip
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(root / "hf", dtype=torch.float32)
    hf_tok = AutoTokenizer.from_pretrained(root / "hf")
    hf_tok.pad_token = hf_tok.eos_token
    trainer = KilnPrompts(
        model=model, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=hf_tok,
        callbacks=[Clock()],
    )  # fmt: skip
    setup = time.perf_counter() - t0
    assert trainer.accelerator.mixed_precision == "no", "TRL would autocast: not fp32 vs fp32"
    trainer.train()
    return result(args, times, lengths, rewards, setup)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--group", type=int, default=8, help="completions per prompt")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--n-prompts", type=int, default=256, help="prompts in the set")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="kiln/TRL rounds, alternating (median ratio reported)")
    p.add_argument("--side", choices=["kiln", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.side:
        root = Path(args.root)
        out = side_kiln(root, args) if args.side == "kiln" else side_trl(root, args)
        print("RESULT " + json.dumps(out))
        return 0

    root = Path(tempfile.mkdtemp(prefix="kiln-grpo-bench-"))
    build(root, args.n_prompts)
    common = [f"--steps={args.steps}", f"--prompts={args.prompts}", f"--group={args.group}",
              f"--new-tokens={args.new_tokens}", f"--lr={args.lr}", f"--threads={args.threads}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}

    def side(name: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, f"--side={name}", f"--root={root}", *common],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if out.returncode:
            sys.exit(f"the {name} side failed:\n{out.stderr[-4000:]}")
        line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
        return json.loads(line[len("RESULT ") :])

    # Rounds alternate the sides: on a shared machine a burst of other work hits both alike.
    ratios = []
    for r in range(args.rounds):
        kiln, trl = side("kiln"), side("trl")
        ratios.append(kiln["tokens_per_s"] / trl["tokens_per_s"])
        print(f"round {r + 1}: completion tokens/s kiln {kiln['tokens_per_s']:.0f}  TRL {trl['tokens_per_s']:.0f}  "
              f"({ratios[-1]:.2f}x)")  # fmt: skip
    print(f"{args.steps} steps x {args.prompts} prompts x {args.group} completions, at most {args.new_tokens} new "
          f"tokens, lr {args.lr}, {args.threads} threads, fp32")  # fmt: skip
    for name, s in (("kiln", kiln), ("TRL", trl)):
        print(f"{name:>4}: {s['s_per_step']:.2f} s/step, {s['tokens_per_s']:.0f} completion tokens/s, mean "
              f"completion {s['mean_length']:.1f} tokens, mean reward {s['mean_reward']:.3f}, setup "
              f"{s['setup_s']:.1f} s, peak RSS {s['maxrss_mb']:,.0f} MB")  # fmt: skip
    print(f"kiln / TRL, completion tokens/s: {kiln['tokens_per_s'] / trl['tokens_per_s']:.2f}x "
          f"(median over {args.rounds} rounds {sorted(ratios)[len(ratios) // 2]:.2f}x); s/step: "
          f"{trl['s_per_step'] / kiln['s_per_step']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
