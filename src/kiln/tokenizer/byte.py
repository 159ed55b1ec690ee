"""Byte-level tokenizer: token i is byte i (256 tokens). Any text encodes, nothing is unknown.

It is what a randomly initialised preset uses before any vocabulary is trained, and the base layer
that byte-level BPE merges on top of.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln.tokenizer.base import META_FILE
from kiln.utils.io import atomic_write_text


class ByteTokenizer:
    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return 256

    @property
    def special_tokens(self) -> dict[str, int]:
        return {}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Ids past 255 (a model with a bigger vocabulary) and split UTF-8 sequences become U+FFFD."""
        return b"".join(bytes([i]) if 0 <= i < 256 else b"\xef\xbf\xbd" for i in ids).decode("utf-8", "replace")

    def id_to_bytes(self, token_id: int) -> bytes:
        return bytes([token_id])

    def save(self, directory: str | Path) -> None:
        atomic_write_text(Path(directory) / META_FILE, json.dumps({"kind": self.kind}))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> ByteTokenizer:
        return cls()
