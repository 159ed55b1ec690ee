"""Verifiable rewards for `kiln rl`: programs that check a reply, and a trained reward model.

- `words`: the share of the record's `words` the reply uses (1.0 = the instruction followed), the quickstart's
  TinyStories task; partial credit, so a model that never uses every word still gets a signal;
- `all_words`: 1.0 when the reply uses every one of the record's `words` (the quickstart's success check), else 0:
  the binary verifiable reward, for a model that sometimes succeeds;
- `number`: 1.0 when the reply's last number equals the answer's (GSM8K's "#### 72", or a bare number);
- `model:PATH`: a `kiln reward` checkpoint's score of the reply (a step's replies scored together, one batched
  forward per prompt, not one per reply);
- `repetition`: a penalty in [-1, 0], minus the share of the reply's word 3-grams that repeat an earlier one (Yeo
  et al. 2025, appendix C.2, as open-r1 has it): not a task of its own, a term to add to one, since a policy can
  raise a task reward and drift into repeating itself (docs/benchmarks.md, post-training effects).
Rewards add up, each with an optional weight: `words+repetition`, `all_words+0.5*repetition` (TRL sums its
reward functions the same way). A reward function that raises gives that sample 0 and is counted: one bad sample
never stops a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kiln.posttrain.word_task import uses_words, words_used

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

RewardFn = Callable[[dict[str, Any], str], float]


REPETITION_NGRAM = 3


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def words_reward(record: dict[str, Any], reply: str) -> float:
    words = record["words"]
    return words_used(reply, words) / len(words)


def all_words_reward(record: dict[str, Any], reply: str) -> float:
    return float(uses_words(reply, record["words"]))


def number_reward(record: dict[str, Any], reply: str) -> float:
    answer = str(record["answer"])
    target = answer.split("####")[-1] if "####" in answer else answer
    want, got = last_number(target), last_number(reply)
    return 1.0 if want is not None and got is not None and float(want) == float(got) else 0.0


def repetition_reward(record: dict[str, Any], reply: str) -> float:
    """-(1 - distinct / total) over the reply's lower-cased, whitespace-split word 3-grams; 0 for a reply with
    fewer than three words."""
    words = reply.lower().split()
    grams = list(zip(*(words[i:] for i in range(REPETITION_NGRAM)), strict=False))
    return -(1.0 - len(set(grams)) / len(grams)) if grams else 0.0


class ModelReward:
    """A `kiln reward` model as a reward function: called with one reply, or through `batch` with a step's replies,
    which scores each prompt's group of replies in one forward (GRPO samples `group` replies per prompt)."""

    def __init__(self, path: str, tokenizer: Any, device: Any) -> None:
        from kiln.posttrain.reward_model import load_reward_model

        self.model, self.tokenizer = load_reward_model(path, device=device), tokenizer

    def __call__(self, record: dict[str, Any], reply: str) -> float:
        return self.batch([record], [reply])[0]

    def batch(self, records: Sequence[dict[str, Any]], replies: Sequence[str]) -> list[float]:
        from kiln.posttrain.reward import score_replies

        groups: dict[tuple, list[int]] = {}
        for i, record in enumerate(records):
            groups.setdefault(tuple(tuple(turn) for turn in record["prompt_turns"]), []).append(i)
        out = [0.0] * len(replies)
        for turns, rows in groups.items():
            scores = score_replies(self.model, self.tokenizer, turns, [replies[i] for i in rows])
            for i, score in zip(rows, scores, strict=True):
                out[i] = score
        return out


class SumReward:
    """Weighted rewards added up. Scored in a batch, each term uses its own `batch` where it has one (a reward
    model's); a term that raises for a reply makes the batch fall back to reply-by-reply scoring, where that reply
    alone gets 0 and is counted (`safe_rewards`)."""

    def __init__(self, terms: list[tuple[float, RewardFn]]) -> None:
        self.terms = terms

    def __call__(self, record: dict[str, Any], reply: str) -> float:
        return sum(w * fn(record, reply) for w, fn in self.terms)

    def batch(self, records: Sequence[dict[str, Any]], replies: Sequence[str]) -> list[float]:
        out = [0.0] * len(replies)
        for w, fn in self.terms:
            scores, failed = safe_rewards(fn, records, replies)
            if failed:  # the caller counts failures reply by reply: let it score them one at a time
                raise RuntimeError(f"{failed} replies failed a reward term")
            out = [o + w * v for o, v in zip(out, scores, strict=True)]
        return out


def get_reward(name: str, tokenizer: Any = None, device: Any = "cpu") -> RewardFn:
    """A reward function (record, reply) -> float by name; `model:PATH` loads a reward model; `a+0.5*b` adds
    rewards with weights."""
    if ("+" in name or "*" in name) and not name.startswith("model:"):  # a sum, or one weighted term
        terms = [t.strip() for t in name.split("+")]
        weighted = []
        for term in terms:
            weight, _, fn_name = term.rpartition("*")
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"reward {name!r}: {weight!r} is not a number (write 0.5*repetition)") from None
            weighted.append((w, get_reward(fn_name.strip(), tokenizer, device)))
        return SumReward(weighted)
    if name.startswith("model:"):
        return ModelReward(name[len("model:") :], tokenizer, device)
    fns: dict[str, RewardFn] = {
        "words": words_reward, "all_words": all_words_reward, "number": number_reward, "repetition": repetition_reward,
    }  # fmt: skip
    if name not in fns:
        raise ValueError(
            f"unknown reward {name!r}; choose words, all_words, number, repetition or model:PATH (a+b adds)"
        )
    return fns[name]


def safe_rewards(fn: RewardFn, records: Sequence[dict[str, Any]], replies: Sequence[str]) -> tuple[list[float], int]:
    """Rewards for every reply; one that raises scores 0 and is counted (the run goes on). A function with a
    `batch(records, replies)` method scores them all at once; if that raises, they are scored one by one, so only
    the replies that fail get 0."""
    batch = getattr(fn, "batch", None)
    if batch is not None:
        try:
            return [float(v) for v in batch(records, replies)], 0
        except Exception:  # a user's reward may raise anything: find the replies that fail, one at a time
            pass
    out, failed = [], 0
    for record, reply in zip(records, replies, strict=True):
        try:
            out.append(float(fn(record, reply)))
        except Exception:  # a user's reward function may raise anything; the sample must not stop the run
            out.append(0.0)
            failed += 1
    return out, failed
