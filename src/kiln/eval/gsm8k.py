"""GSM8K prompts: the chat template for chat models, lm-evaluation-harness's plain few-shot layout otherwise.

- A tokenizer with a chat template's tokens (kiln.tokenizer.chat.template_for) is a chat model's: the question is
  the user's turn, as `kiln sft` renders GSM8K's {question, answer} records (the user says the question, the
  assistant answers with the worked solution ending "#### N"), and the reply ends at the template's end-of-turn
  token. Few-shot examples become earlier user/assistant turns (the harness's `fewshot_as_multiturn`).
- Otherwise (a base model) the harness's gsm8k task: "Question: {question}\\nAnswer:", few-shot examples as
  "Question: ...\\nAnswer: {answer}" joined by a blank line, generation until "Question:", "</s>" or
  "<|im_end|>" (its `until`), or the end-of-text token (the harness's HF backend always stops at EOS too).
"""

from __future__ import annotations

import random

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


def is_chat(tokenizer: Tokenizer) -> bool:
    return template_for(tokenizer) is not None


def prompt_ids(tokenizer: Tokenizer, task: Task, index: int, num_fewshot: int = 0, seed: int = 1234) -> list[int]:
    """The prompt's token ids: a chat rendering for a chat tokenizer, the plain few-shot text otherwise."""
    if is_chat(tokenizer):
        turns: list[tuple[str, str]] = []
        for shot in fewshot_items(task, index, num_fewshot, seed):
            turns += [("user", shot.contexts[0]), ("assistant", shot.choices[0])]
        return render_chat_ids(tokenizer, [*turns, ("user", task.items[index].contexts[0])])
    return tokenizer.encode(plain_prompt(task, index, num_fewshot, seed))


def stop_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """Token ids that end the answer: the chat template's end of turn, else end-of-text."""
    end = stop_token(tokenizer) if is_chat(tokenizer) else end_of_text(tokenizer)
    return () if end is None else (end,)
