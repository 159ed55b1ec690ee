"""The interface every kiln tokenizer implements, and loading one from its saved directory."""

from __future__ import annotations

import json
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


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whatever kind of tokenizer was saved in `directory`; a missing or malformed file is a clear error."""
    from kiln.tokenizer.byte import ByteTokenizer
    from kiln.tokenizer.char import CharTokenizer

    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no tokenizer at {directory}: {META_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid tokenizer file ({e})") from e
    kinds = {"char": CharTokenizer, "byte": ByteTokenizer}
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in kinds:
        raise ValueError(f"{path}: unknown tokenizer kind {kind!r}; known: {', '.join(kinds)}")
    return kinds[kind].from_meta(meta, path)
