"""Votes -> preference pairs in the format `kiln dpo` reads (`kiln.posttrain.pairs`): `{"prompt", "chosen",
"rejected"}`, text for a completion battle, chat messages (TRL's conversational format) for a chat battle.

A tie or a "both bad" says neither answer is preferred, and a pair of identical answers teaches nothing
(`kiln dpo` refuses one): neither becomes a pair.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from kiln.serve.arena.ratings import WIN_SCORE, Game


def to_pair(vote: dict[str, Any]) -> dict[str, Any] | None:
    """The DPO pair of one vote, or None when it prefers neither answer."""
    if vote["winner"] not in ("a", "b") or vote["answer_a"] == vote["answer_b"]:
        return None
    win, lose = ("a", "b") if vote["winner"] == "a" else ("b", "a")
    chosen, rejected = vote[f"answer_{win}"], vote[f"answer_{lose}"]
    if vote["mode"] == "chat":
        system = [{"role": "system", "content": vote["system"]}] if vote.get("system") else []
        return {
            "prompt": [*system, {"role": "user", "content": vote["prompt"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    return {"prompt": vote["prompt"], "chosen": chosen, "rejected": rejected}


def dpo_lines(votes: Iterable[dict[str, Any]], mode: str | None = None) -> Iterator[str]:
    """One JSONL line per pair, in vote order; only battles of `mode` if given."""
    for vote in votes:
        if mode is not None and vote["mode"] != mode:
            continue
        pair = to_pair(vote)
        if pair is not None:
            yield json.dumps(pair, ensure_ascii=False) + "\n"


def games(votes: Iterable[dict[str, Any]]) -> list[Game]:
    """The votes as rating games (model_a's score: 1 win, 0 loss, 0.5 tie or both bad)."""
    return [Game(v["model_a"], v["model_b"], WIN_SCORE[v["winner"]]) for v in votes]
