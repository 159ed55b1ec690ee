"""Items -> (context, continuation) text pairs and their tokens, laid out exactly as lm-evaluation-harness does.

The harness scores a choice as log P(" " + choice | context) (its `target_delimiter` is a space); few-shot
examples are whole solved items joined by a blank line (`fewshot_delimiter` "\\n\\n"). Its tokenisation of a pair
(`_encode_pair`) moves trailing spaces of the context onto the continuation, encodes context and context +
continuation, and takes the continuation's tokens as the difference: a token that straddles the boundary is
counted in the continuation. Doing the same here is what makes kiln's choices identical to the harness's.
"""

from __future__ import annotations

import random

from kiln.eval.tasks import Item, Task
from kiln.tokenizer import Tokenizer

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


def solved(item: Item) -> str:
    """An item with its right answer, as a few-shot example."""
    if item.kind == "schema":
        return item.contexts[item.gold] + TARGET_DELIMITER + item.choices[0]
    return item.contexts[0] + TARGET_DELIMITER + item.choices[item.gold]


def pairs(item: Item, prefix: str = "") -> list[tuple[str, str]]:
    """(context, continuation) per option: one context and each choice, or each context option and the one
    continuation (schema), or the context and the word (lm)."""
    if item.kind == "schema":
        return [(prefix + c, TARGET_DELIMITER + item.choices[0]) for c in item.contexts]
    return [(prefix + item.contexts[0], TARGET_DELIMITER + c) for c in item.choices]


def fewshot_prefix(task: Task, index: int, k: int, seed: int) -> str:
    """k other items of the same task, solved, each followed by a blank line; chosen by (seed, index), so a run
    repeats exactly and every item gets its own examples (the harness draws them the same way, from its own RNG,
    so few-shot scores match it in distribution, not item by item)."""
    if k <= 0:
        return ""
    others = [i for i in range(len(task.items)) if i != index]
    if len(others) < k:
        raise ValueError(f"num_fewshot={k} but task {task.name} has only {len(task.items)} items")
    shots = random.Random(seed * 1_000_003 + index).sample(others, k)
    return "".join(solved(task.items[i]) + FEWSHOT_DELIMITER for i in shots)


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str, eot: int | None) -> tuple[list[int], list[int]]:
    """Context and continuation tokens, split as the harness splits them (see the module docstring)."""
    if not context:
        # The harness conditions an empty context on its prefix token (end-of-text for GPT-2).
        if eot is None:
            raise ValueError("an empty context needs an end-of-text token, and this tokenizer has none")
        return [eot], tokenizer.encode(continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx) :]


def end_of_text(tokenizer: Tokenizer) -> int | None:
    special = tokenizer.special_tokens
    return special.get("<|endoftext|>", next(iter(special.values()), None))
