"""Conversations for supervised fine-tuning, from the formats SFT data comes in.

One record becomes one conversation, a list of (role, text) turns:
- chat: `{"messages": [{"role": ..., "content": ...}, ...]}` (OpenAI / TRL's conversational format);
- ShareGPT: `{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}`;
- Alpaca: `{"instruction", "input", "output"}` -> user: instruction (+ a blank line + input), assistant: output;
- self-instruct seed tasks: `{"instruction", "instances": [{"input", "output"}, ...]}` (Alpaca's seed_tasks.jsonl)
  -> one Alpaca conversation per instance;
- prompt/completion: `{"prompt", "completion"}` (TRL's prompt-completion format);
- question/answer: `{"question", "answer"}` (GSM8K).
Files are JSONL (a record per line) or a JSON array (Alpaca's own files); `.gz` is read transparently.

A conversation must make sense as training data: an optional system turn first, then user and assistant
alternating, starting with the user and ending with the assistant (the turn the loss trains). Anything else is
an error naming the file and line, because a silently skipped or misread record is a model trained on the wrong
thing.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class ConversationError(ValueError):
    """A record that is not a valid training conversation (the message names file and line)."""


@dataclass(frozen=True)
class Conversation:
    turns: tuple[tuple[str, str], ...]
    """(role, text) pairs: optional system, then user / assistant alternating, ending with the assistant."""
    source: str = ""
    """file:line, for messages about this record."""
    words: tuple[str, ...] = ()
    """The record's `words` (the words its instruction asks the reply to use, as the quickstart's word task writes
    them): SFT's `keyword_weight` weighs their tokens in the assistant's replies."""


def _open_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConversationError(f"{path}: not UTF-8 text ({e})") from None


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed record); a JSON array counts its elements as lines 1, 2, ..."""
    text = _open_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConversationError(f"{path}: not valid JSON ({e})") from None
        yield from enumerate(items, start=1)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise ConversationError(f"{path}:{number}: not valid JSON ({e.msg})") from None


def examples(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) of every example in a file: a self-instruct task with several instances is one example per
    instance (`file:line instance k`), so every reader of conversations and prompts takes that format too."""
    for number, record in _records(path):
        where = f"{path}:{number}"
        if not (isinstance(record, dict) and "instances" in record and "instruction" in record):
            yield where, record
            continue
        instances = record["instances"]
        if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
            raise ConversationError(f"{where}: 'instances' must be a non-empty list of {{input, output}} objects")
        for k, instance in enumerate(instances, start=1):
            one = {key: value for key, value in record.items() if key != "instances"}
            one.update(input=instance.get("input", ""), output=instance.get("output"))
            yield (f"{where} instance {k}" if len(instances) > 1 else where), one


def to_turns(record: Any, where: str) -> list[tuple[str, str]]:
    """One record in any supported format -> its (role, text) turns (not yet checked for order)."""
    if not isinstance(record, dict):
        raise ConversationError(f"{where}: expected a JSON object, got {type(record).__name__}")

    def text(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise ConversationError(f"{where}: {field} must be a string, got {type(value).__name__}")
        return value

    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            raise ConversationError(f"{where}: 'messages' must be a list")
        turns = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ConversationError(f"{where}: messages[{i}] needs 'role' and 'content'")
            role = "system" if m["role"] == "developer" else m["role"]
            turns.append((role, text(m["content"], f"messages[{i}].content")))
        return turns
    if "conversations" in record:
        turns = []
        for i, m in enumerate(record["conversations"] or []):
            if not isinstance(m, dict) or m.get("from") not in _SHAREGPT_ROLES:
                raise ConversationError(f"{where}: conversations[{i}] needs 'from' (human, gpt or system)")
            turns.append((_SHAREGPT_ROLES[m["from"]], text(m.get("value"), f"conversations[{i}].value")))
        return turns
    if "instruction" in record:
        prompt = text(record["instruction"], "instruction")
        extra = record.get("input") or ""
        if extra:
            prompt += "\n\n" + text(extra, "input")
        return [("user", prompt), ("assistant", text(record.get("output"), "output"))]
    for question, answer in (("prompt", "completion"), ("question", "answer")):
        if question in record:
            return [("user", text(record[question], question)), ("assistant", text(record.get(answer), answer))]
    keys = ", ".join(sorted(record)) or "none"
    raise ConversationError(
        f"{where}: unknown record format (keys: {keys}); expected messages, conversations, "
        "instruction/input/output, prompt/completion or question/answer"
    )


def check_order(turns: list[tuple[str, str]], where: str) -> None:
    """Optional system first, then user/assistant alternating from the user, ending with the assistant."""
    for role, _ in turns:
        if role not in ROLES:
            raise ConversationError(f"{where}: unknown role {role!r}; roles are {', '.join(ROLES)}")
    body = turns[1:] if turns and turns[0][0] == "system" else turns
    if not any(role == "assistant" for role, _ in body):
        raise ConversationError(f"{where}: the conversation has no assistant turn (nothing to train on)")
    for i, (role, _) in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ConversationError(
                f"{where}: roles out of order: turn {i + 1 + (len(turns) - len(body))} is {role!r}, expected "
                f"{expected!r} (an optional system turn, then user and assistant alternating)"
            )
    if body[-1][0] != "assistant":
        raise ConversationError(f"{where}: the conversation ends with a user turn; it must end with the assistant")


def _words(record: dict[str, Any], where: str) -> tuple[str, ...]:
    words = record.get("words", [])
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise ConversationError(f"{where}: 'words' must be a list of non-empty strings")
    return tuple(w.strip() for w in words)


def read_conversations(paths: list[str | Path]) -> list[Conversation]:
    """Every conversation of every file, in order; the first invalid record is an error naming file:line."""
    out: list[Conversation] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        for where, record in examples(path):
            turns = to_turns(record, where)
            check_order(turns, where)
            out.append(Conversation(tuple(turns), where, _words(record, where)))
    if not out:
        raise ConversationError(f"no conversations in {', '.join(map(str, paths))}")
    return out
