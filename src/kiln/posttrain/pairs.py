"""Preference pairs: a prompt (a conversation so far) and two replies, the chosen and the rejected one.

Formats, one record each (JSONL or a JSON array, `.gz` too):
- `{"prompt", "chosen", "rejected"}` with text (the prompt is one user turn) or chat messages (TRL's formats;
  chosen/rejected may be a list holding the assistant message);
- `{"conversations": [...ShareGPT...], "chosen": {"from": "gpt", "value"}, "rejected": {...}}` (LLaMA-Factory);
- `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}` (Anthropic HH-RLHF): the shared
  transcript up to the last "Assistant:" is the prompt.
A pair whose replies are identical, or that misses a field, is an error naming file and line: it teaches nothing,
or something else than meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.posttrain.conversations import ConversationError, _records, check_order, to_turns

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


@dataclass(frozen=True)
class Pair:
    prompt: tuple[tuple[str, str], ...]
    """The conversation before the reply: optional system, then user/assistant alternating, ending with the user."""
    chosen: str
    rejected: str
    source: str = ""

    @property
    def key(self) -> tuple:
        """What the held-out split hashes: the pair's text."""
        return (self.prompt, self.chosen, self.rejected)


def _reply(value: Any, field: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("value", value.get("content")), str):
        return value.get("value", value.get("content"))
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        last = value[-1]
        if last.get("role", "assistant") == "assistant" and isinstance(last.get("content"), str):
            return last["content"]
    raise ConversationError(f"{where}: {field} must be text or an assistant message")


def _hh(text: str, where: str) -> tuple[list[tuple[str, str]], str]:
    parts = _HH_TURN.split(text)
    turns = [
        ("user" if role == "Human" else "assistant", body.strip())
        for role, body in zip(parts[1::2], parts[2::2], strict=False)
    ]
    if len(turns) < 2 or turns[-1][0] != "assistant":
        raise ConversationError(f"{where}: an HH-RLHF transcript must end with an Assistant turn")
    return turns[:-1], turns[-1][1]


def to_pair(record: Any, where: str) -> Pair:
    if not isinstance(record, dict):
        raise ConversationError(f"{where}: expected a JSON object")
    for key in ("chosen", "rejected"):
        if key not in record:
            raise ConversationError(f"{where}: the pair has no {key!r}")
    if "prompt" in record:
        prompt = record["prompt"]
        turns = [("user", prompt)] if isinstance(prompt, str) else to_turns({"messages": prompt}, where)
        chosen, rejected = (_reply(record[k], k, where) for k in ("chosen", "rejected"))
    elif "conversations" in record:
        turns = to_turns({"conversations": record["conversations"]}, where)
        chosen, rejected = (_reply(record[k], k, where) for k in ("chosen", "rejected"))
    elif isinstance(record["chosen"], str) and "\n\nHuman: " in record["chosen"]:
        turns, chosen = _hh(record["chosen"], where)
        turns_r, rejected = _hh(record["rejected"], where)
        if turns_r != turns:
            raise ConversationError(f"{where}: chosen and rejected transcripts differ before the last reply")
    else:
        raise ConversationError(f"{where}: unknown pair format (expected prompt, conversations, or HH transcripts)")
    check_order([*turns, ("assistant", chosen)], where)
    if chosen == rejected:
        raise ConversationError(f"{where}: chosen and rejected are identical (the pair teaches nothing)")
    return Pair(tuple(turns), chosen, rejected, where)


def read_pairs(paths: list[str | Path]) -> list[Pair]:
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        out += [to_pair(record, f"{path}:{n}") for n, record in _records(path)]
    if not out:
        raise ConversationError(f"no preference pairs in {', '.join(map(str, paths))}")
    return out
