"""Character-level tokenizer: one token per distinct character of the training text.

The smallest possible vocabulary (65 for Tiny Shakespeare) makes the first model train in minutes on a
CPU, and every token is readable, which is why char-level models are where courses start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kiln.tokenizer.base import META_FILE
from kiln.utils.io import atomic_write_text


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))
        if not self.chars:
            raise ValueError("a character tokenizer needs at least one character")
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("every entry of a character vocabulary must be one character")
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The vocabulary is every character that occurs in `text`."""
        if not text:
            raise ValueError("cannot build a character vocabulary from empty text")
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {}

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in this tokenizer's vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] if 0 <= i < len(self.chars) else "\ufffd" for i in ids)

    def id_to_bytes(self, token_id: int) -> bytes:
        return self.chars[token_id].encode("utf-8")

    def save(self, directory: str | Path) -> None:
        meta = {"kind": self.kind, "chars": "".join(self.chars)}
        atomic_write_text(Path(directory) / META_FILE, json.dumps(meta, ensure_ascii=False))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> CharTokenizer:
        chars = meta.get("chars")
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"{path}: a char tokenizer needs a non-empty 'chars' string")
        return cls(chars)
