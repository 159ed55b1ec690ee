"""The quickstart's post-training: its instruction task ("Write a short story that uses the words A, B and C."),
the SFT and GRPO configs the quickstart runs on it, and the follow check that counts the held-out instructions
each model follows (kiln.posttrain.word_task builds the task; this module decides how the quickstart uses it).
`Quickstart` takes these methods from `InstructionTask`; they read its workspace and config."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from kiln.quickstart.resume import resume_or_start
from kiln.utils.io import atomic_write_text

EVAL_TASKS = 48  # held-out instructions the follow check generates for
SWAPS_PER_TASK = 3  # word-swapped copies of each SFT task (kiln.posttrain.word_task.swapped_tasks)
# Where the swapped words come from: every uncommon word of the stories (3,456), not only the 1,176 the instructions
# name. From the same base, 1,319 SFT steps each: held-out pass@1 6.2% against 3.3%, pass@32 41.7% against 29.2%,
# and after 10 minutes of GRPO 12.4% against 8.2% (docs/benchmarks.md, GRPO round 17).
SWAP_VOCABULARY = "stories"
# GRPO's settings, the best measured on this task (docs/benchmarks.md, rounds 8-14): the share of the words plus
# success counted twice and a repetition penalty; 16 prompts x 8 replies of 64 tokens a step, sampled as the follow
# check samples (temperature 0.7, top-k 50); Dr. GRPO's centred advantages, DAPO's token-mean loss. From the same
# SFT model, 10 minutes of these gained 12.0 points of held-out success where the earlier settings (share of the
# words, 4 prompts, 96 tokens, temperature 1, lr 2e-5) gained 2.6 (round 14).
RL_RECIPE = (
    "reward=words+2*all_words+repetition", "group=8", "batch_size=16", "max_new_tokens=64", "lr=2e-4",
    "temperature=0.7", "top_k=50", "scale_rewards=false", "loss_type=bnpo",
)  # fmt: skip
KEYWORD_WEIGHT = 10.0  # SFT loss weight of the instruction's words in the reply (SFTConfig.keyword_weight)


class InstructionTask:
    """The post-training half of `Quickstart` (a mixin: `cfg`, `ws`, `out`, `path` and `run_dir` are its)."""

    cfg: Any
    ws: Path
    out: Any
    path: Any
    run_dir: Path

    @property
    def chat_dir(self) -> Path:
        return self.ws / "models" / "quickstart-chat"

    @functools.cached_property
    def _tasks(self) -> tuple[list[Any], list[Any]]:
        """The instruction task: (train, held-out) from the bundled TinyStories, the last EVAL_TASKS held out."""
        from kiln.posttrain.word_task import make_tasks, read_tinystories
        from kiln.quickstart import assets as quickstart_assets

        tasks = make_tasks(read_tinystories(quickstart_assets() / "tinystories.txt.gz"), seed=0)
        return tasks[:-EVAL_TASKS], tasks[-EVAL_TASKS:]

    def _write_sft_data(self) -> None:
        """The training tasks, and three copies of each with the words swapped for other words of the stories: a
        swapped word is predictable only from the instruction, so (with keyword_weight on the words' tokens) the
        small model learns to copy the words from the prompt instead of only the stories (docs/benchmarks.md)."""
        from kiln.posttrain.word_task import swapped_tasks

        path = self.path("sft") / "train.jsonl"
        if not path.is_file():
            train, _ = self._tasks
            tasks = [*train, *swapped_tasks(train, per_task=SWAPS_PER_TASK, vocabulary=SWAP_VOCABULARY)]
            atomic_write_text(path, "".join(json.dumps(t.record()) + "\n" for t in tasks))

    def _write_rl_prompts(self) -> None:
        """GRPO's prompts: new word triples (`word_task.new_instructions`), not the SFT tasks, whose stories the model
        can recall: on those the reward rises without the instruction being followed (docs/benchmarks.md)."""
        from kiln.posttrain.word_task import new_instructions

        path = self.path("sft") / "rl_prompts.jsonl"
        if not path.is_file():
            train, _ = self._tasks
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in new_instructions(train, 4000)))

    def _sft_config(self) -> Any:
        from kiln.posttrain.sft_config import load_sft_config

        settings = [
            f"checkpoint={self.run_dir}",
            f"inputs={json.dumps([str(self.path('sft') / 'train.jsonl')])}",
            f"out_dir={self.chat_dir}",
            "batch_size=16",
            "lr=1e-3",
            "warmup_steps=20",
            f"keyword_weight={KEYWORD_WEIGHT}",
            "max_steps=1000000",
            f"max_minutes={self.cfg.sft_minutes}",
            "eval_interval=1000000",
        ]
        return resume_or_start(load_sft_config, self.chat_dir, settings)

    @property
    def rl_dir(self) -> Path:
        return self.ws / "models" / "quickstart-rl"

    def _rl_config(self) -> Any:
        from kiln.posttrain.rl import load_rl_config

        settings = [
            f"checkpoint={self.chat_dir}",
            f"inputs={json.dumps([str(self.path('sft') / 'rl_prompts.jsonl')])}",
            f"out_dir={self.rl_dir}",
            *RL_RECIPE,
            "max_steps=1000000",
            f"max_minutes={self.cfg.rl_minutes}",
            "eval_interval=1000000",
            "eval_batches=2",
        ]
        return resume_or_start(load_rl_config, self.rl_dir, settings)

    def _follow(self) -> None:
        """Generate for the held-out instructions with the base and the fine-tuned model; count the replies that
        use all three words (checked by a program)."""
        from kiln.generate import SamplingParams, generate_batch
        from kiln.model.checkpoint import load_checkpoint
        from kiln.posttrain.word_task import uses_words, words_used
        from kiln.tokenizer.chat import render_chat_ids, reply_stops

        _, held_out = self._tasks
        rates = {}
        models = [("base", self.run_dir), ("sft", self.chat_dir)]
        if self.cfg.rl_minutes > 0:
            models.append(("rl", self.rl_dir))
        for name, path in models:
            model, tok, _ = load_checkpoint(path)
            assert tok is not None
            prompts = [render_chat_ids(tok, [("user", t.prompt)]) for t in held_out]
            room = model.config.block_size - max(map(len, prompts))
            params = SamplingParams(
                temperature=0.7, top_k=50, max_new_tokens=min(160, room), seed=1, stop_token_ids=reply_stops(tok)
            )
            replies = [c.text for c in generate_batch(model, prompts, params, tokenizer=tok)]
            pairs = list(zip(replies, held_out, strict=True))
            followed = sum(uses_words(r, t.words) for r, t in pairs)
            rates[name] = followed / len(held_out)
            rates[f"{name}_words"] = sum(words_used(r, t.words) for r, t in pairs) / (3 * len(held_out))
            example = replies[0].strip().replace("\n", " ")[:160]
            share = f"{followed}/{len(held_out)} ({rates[name]:.0%}), {rates[f'{name}_words']:.0%} of the words"
            self.out(f"{name:<5} follows {share}; e.g. {held_out[0].prompt!r} -> {example}")
        atomic_write_text(self.ws / "follow.json", json.dumps(rates, indent=1))
