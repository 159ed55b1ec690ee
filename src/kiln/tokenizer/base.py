"""The interface every kiln tokenizer implements, and the name of its save file.

Loading (which must know every kind) lives in `registry`, so the kinds can import this module without a cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

META_FILE = "kiln-tokenizer.json"


@runtime_checkable
class Tokenizer(Protocol):
    """encode/decode, the vocabulary size, special tokens, each id's bytes, save."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def special_tokens(self) -> dict[str, int]: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def id_to_bytes(self, token_id: int) -> bytes: ...

    def save(self, directory: str | Path) -> None: ...
