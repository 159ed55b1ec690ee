"""`POST /api/tokenize`: text -> tokens with ids and byte spans, for any tokenizer the server can reach.

Offered: each model's own tokenizer (`model:NAME`), three that need no files (`char`: one token per
Unicode character, id = code point; `byte`: one per UTF-8 byte; `word`: words, punctuation and
whitespace runs, ids in order of first appearance), and OpenAI's vocabularies (`gpt2`, `cl100k_base`,
`o200k_base`, ...) whose files are in the vocabulary directory — never downloaded by the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from kiln.tokenizer import Tokenizer
from kiln.tokenizer.pretrained import GPT2_FILES, PRETRAINED, load_pretrained
from kiln.tokenizer.word import WORD_PATTERN

BUILTIN = ("char", "byte", "word")


def vocab_files(vocab_dir: Path | None) -> dict[str, Path]:
    """name -> file (or GPT-2 directory) for each OpenAI vocabulary found locally."""
    if vocab_dir is None or not vocab_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    for name in PRETRAINED:
        for candidate in (vocab_dir / f"{name}.tiktoken", vocab_dir / "tiktoken" / f"{name}.tiktoken"):
            if candidate.is_file():
                found[name] = candidate
                break
    for candidate in (vocab_dir / "gpt2", vocab_dir):
        if "gpt2" not in found and all((candidate / f).is_file() for f in GPT2_FILES):
            found["gpt2"] = candidate
    return found


@lru_cache(maxsize=8)
def _pretrained(name: str, path: str) -> Tokenizer:
    return load_pretrained("gpt2" if name == "gpt2" else name, Path(path))


def pretrained(name: str, vocab_dir: Path | None) -> Tokenizer | None:
    path = vocab_files(vocab_dir).get(name)
    return None if path is None else _pretrained(name, str(path))


# The visualiser draws one element per token; past ~100,000 a browser stalls, and the JSON of each token costs
# ~50 bytes, so a response lists at most this many tokens over all its tokenizers (~5 MB) and counts the rest.
MAX_LISTED_TOKENS = 100_000
# text x tokenizers, in characters: the CPU work one request may ask for (8 tokenizers over 250,000 characters,
# or one over 2,000,000: a few seconds of a thread at worst, never of the event loop).
MAX_TOKENIZE_CHARS = 2_000_000


def _pieces_builtin(kind: str, text: str) -> Iterator[tuple[int, bytes]]:
    if kind == "char":
        return ((ord(ch), ch.encode("utf-8")) for ch in text)
    if kind == "byte":
        return ((b, bytes((b,))) for b in text.encode("utf-8"))
    ids: dict[str, int] = {}
    return ((ids.setdefault(m[0], len(ids)), m[0].encode("utf-8")) for m in WORD_PATTERN.finditer(text))


def tokenize(name: str, tokenizer: Tokenizer | None, text: str, limit: int = MAX_LISTED_TOKENS) -> dict[str, Any]:
    """Tokens of `text` with ids, text and [start, end) byte offsets into its UTF-8 encoding: the first `limit`
    of them listed (`truncated` says whether there were more), all of them counted."""
    if tokenizer is None:
        pieces: Iterable[tuple[int, bytes]] = _pieces_builtin(name, text)
    else:
        # Special-token text stays ordinary text, exactly as the API encodes a prompt: the visualiser shows
        # what the model would receive.
        ids = tokenizer.encode(text)
        pieces = ((i, tokenizer.id_to_bytes(i)) for i in ids)
    tokens, pos, count = [], 0, 0
    for token_id, raw in pieces:
        if count < limit:
            tokens.append(
                {"id": token_id, "text": raw.decode("utf-8", errors="replace"), "start": pos, "end": pos + len(raw)}
            )
        pos += len(raw)
        count += 1
    return {
        "tokenizer": name,
        "tokens": tokens,
        "count": count,
        "truncated": count > len(tokens),
        "bytes": len(text.encode("utf-8")),
        "characters": len(text),
    }
