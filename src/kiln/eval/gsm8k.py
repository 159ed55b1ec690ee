"""GSM8K prompts: the chat template for chat models, lm-evaluation-harness's plain few-shot layout otherwise.

- A chat model (`use_chat_template`: its tokenizer has a chat template's tokens, kiln.tokenizer.chat.template_for,
  and it is not a kiln pretraining run's checkpoint; or chat=yes) gets its template: the question is
  the user's turn, as `kiln sft` renders GSM8K's {question, answer} records (the user says the question, the
  assistant answers with the worked solution ending "#### N"), and the reply ends at the template's end-of-turn
  token. Few-shot examples become earlier user/assistant turns (the harness's `fewshot_as_multiturn`).
- Otherwise (a base model) the harness's gsm8k task: "Question: {question}\\nAnswer:", few-shot examples as
  "Question: ...\\nAnswer: {answer}" joined by a blank line, generation until "Question:", "</s>" or
  "<|im_end|>" (its `until`), or the end-of-text token (the harness's HF backend always stops at EOS too).
"""

from __future__ import annotations

import random
from typing import Any

from kiln.eval.requests import FEWSHOT_DELIMITER, TARGET_DELIMITER, end_of_text
from kiln.eval.tasks import Item, Task
from kiln.tokenizer import Tokenizer
from kiln.tokenizer.chat import render_chat_ids, stop_token, template_for

# lm_eval/tasks/gsm8k/gsm8k.yaml: generation_kwargs.until
STOP_STRINGS = ("Question:", "</s>", "<|im_end|>")


def plain_question(item: Item) -> str:
    """The harness's doc_to_text."""
    return f"Question: {item.contexts[0]}\nAnswer:"


def fewshot_items(task: Task, index: int, k: int, seed: int) -> list[Item]:
    """k other items of the task (never the item itself), chosen by (seed, index) as for multiple choice
    (kiln.eval.requests.fewshot_prefix): the harness draws from GSM8K's train split with its own sampler, so
    few-shot scores match it in distribution, not item by item; zero-shot prompts are identical."""
    if k <= 0:
        return []
    others = [i for i in range(len(task.items)) if i != index]
    if len(others) < k:
        raise ValueError(f"num_fewshot={k} but task {task.name} has only {len(task.items)} items")
    return [task.items[i] for i in random.Random(seed * 1_000_003 + index).sample(others, k)]


def plain_prompt(task: Task, index: int, num_fewshot: int = 0, seed: int = 1234) -> str:
    shots = fewshot_items(task, index, num_fewshot, seed)
    solved = [plain_question(s) + TARGET_DELIMITER + s.choices[0] + FEWSHOT_DELIMITER for s in shots]
    return "".join(solved) + plain_question(task.items[index])


def use_chat_template(mode: str, tokenizer: Tokenizer, meta: dict[str, Any] | None = None) -> bool:
    """Whether to prompt with the chat template. mode "yes"/"no" decides; "auto": when the tokenizer speaks a
    template, unless the checkpoint is from a kiln pretraining run (its config.json's `train` has no source
    `checkpoint`): kiln-trained vocabularies reserve ChatML's tokens so that a base model can later be fine-tuned to
    chat, so the tokens alone do not make a chat model; a fine-tuned (kiln sft/dpo/rl), imported or hand-saved
    checkpoint with them is taken as one."""
    if mode not in ("auto", "yes", "no"):
        raise ValueError(f"chat must be auto, yes or no, got {mode!r}")
    has_template = template_for(tokenizer) is not None
    if mode == "yes" and not has_template:
        raise ValueError("chat=yes but the tokenizer has no chat template's tokens (ChatML's or Llama 3's)")
    if mode != "auto":
        return mode == "yes"
    train = (meta or {}).get("train")
    pretrained_here = isinstance(train, dict) and not train.get("checkpoint")
    return has_template and not pretrained_here


def prompt_ids(
    tokenizer: Tokenizer, task: Task, index: int, num_fewshot: int = 0, seed: int = 1234, chat: bool | None = None
) -> list[int]:
    """The prompt's token ids: a chat rendering for a chat model (chat None: whenever the tokenizer has a
    template), the plain few-shot text otherwise."""
    if chat if chat is not None else template_for(tokenizer) is not None:
        turns: list[tuple[str, str]] = []
        for shot in fewshot_items(task, index, num_fewshot, seed):
            turns += [("user", shot.contexts[0]), ("assistant", shot.choices[0])]
        return render_chat_ids(tokenizer, [*turns, ("user", task.items[index].contexts[0])])
    return tokenizer.encode(plain_prompt(task, index, num_fewshot, seed))


def stop_ids(tokenizer: Tokenizer, chat: bool | None = None) -> tuple[int, ...]:
    """Token ids that end the answer: the chat template's end of turn for a chat prompt, else end-of-text."""
    chat = template_for(tokenizer) is not None if chat is None else chat
    end = stop_token(tokenizer) if chat else end_of_text(tokenizer)
    return () if end is None else (end,)
