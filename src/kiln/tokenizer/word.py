"""Word-level tokenizer: words, punctuation marks and whitespace runs, the most frequent ones up to a cap.

The classic pre-subword vocabulary: readable tokens, but any word not seen often enough in training becomes
<|unk|>, and a big vocabulary is needed to cover a language's long tail, which is the problem BPE solves.
Whitespace runs are tokens too, so text made of known pieces decodes back exactly.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Literal

from kiln.tokenizer.base import META_FILE
from kiln.utils.io import atomic_write_text

WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\s+")
UNK = "<|unk|>"


class WordTokenizer:
    kind = "word"

    def __init__(self, words: list[str], special_tokens: Iterable[str] = ()) -> None:
        """`words`: the vocabulary in id order after <|unk|> (id 0); special tokens follow the words."""
        if len(set(words)) != len(words):
            raise ValueError("word vocabulary entries must be distinct")
        self.words = [UNK, *words]
        self.stoi = {w: i for i, w in enumerate(self.words)}
        self._special: dict[str, int] = {}
        for name in special_tokens:
            if not name or name in self.stoi or name in self._special:
                raise ValueError(f"special token {name!r} is empty or already in the vocabulary")
            self._special[name] = len(self.words) + len(self._special)
        self._special_re = (
            re.compile("(" + "|".join(map(re.escape, sorted(self._special, key=len, reverse=True))) + ")")
            if self._special
            else None
        )

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, special_tokens: Iterable[str] = ("<|endoftext|>",)
    ) -> WordTokenizer:
        """Keep the vocab_size - 1 - len(special) most frequent pieces (ties: alphabetical, for determinism)."""
        special_tokens = list(special_tokens)
        room = vocab_size - 1 - len(special_tokens)
        if room < 1:
            raise ValueError(
                f"vocab_size {vocab_size} is too small: it must hold <|unk|>, {len(special_tokens)} special"
                " token(s) and at least one word"
            )
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(WORD_PATTERN.findall(text))
        if not counts:
            raise ValueError("cannot train a tokenizer on an empty corpus (no text in any document)")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked[:room]], special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.words) + len(self._special)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def unk_id(self) -> int:
        return 0

    def encode(self, text: str, allowed_special: Collection[str] | Literal["all"] = ()) -> list[int]:
        """Ids of the pieces of `text`; pieces not in the vocabulary become <|unk|> (id 0)."""
        allowed = set(self._special) if allowed_special == "all" else set(allowed_special)
        unknown = sorted(allowed - set(self._special))
        if unknown:
            raise ValueError(f"unknown special token(s) {unknown}; this tokenizer has: {sorted(self._special)}")
        if not allowed or self._special_re is None:
            return [self.stoi.get(w, 0) for w in WORD_PATTERN.findall(text)]
        ids: list[int] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2 == 1 and part in allowed:
                ids.append(self._special[part])
            else:
                ids.extend(self.stoi.get(w, 0) for w in WORD_PATTERN.findall(part))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        names = {i: s for s, i in self._special.items()}
        n = len(self.words)
        return "".join(self.words[i] if 0 <= i < n else names.get(i, "\ufffd") for i in ids)

    def id_to_bytes(self, token_id: int) -> bytes:
        if 0 <= token_id < len(self.words):
            return self.words[token_id].encode("utf-8")
        for name, i in self._special.items():
            if i == token_id:
                return name.encode("utf-8")
        raise IndexError(f"token id {token_id} is outside the vocabulary [0, {self.vocab_size})")

    def save(self, directory: str | Path) -> None:
        meta = {"kind": self.kind, "words": self.words[1:], "special_tokens": list(self._special)}
        atomic_write_text(Path(directory) / META_FILE, json.dumps(meta, ensure_ascii=False))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> WordTokenizer:
        words, special = meta.get("words"), meta.get("special_tokens", [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path}: a word tokenizer needs a 'words' list of strings")
        return cls(words, special)
