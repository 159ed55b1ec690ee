"""The prompt a checkpoint offers the playground: the first words of its training data, unless the run names one.

A model continues text like the text it was trained on, so the opening of its first training document is a
prompt that suits it ("First Citizen:" for Tiny Shakespeare, "Once upon a time" for TinyStories). It is stored
as `default_prompt` in the checkpoint's config.json, where `kiln serve` reads it for the /v1/models card.
"""

from __future__ import annotations

from pathlib import Path

from kiln.tokenize.shards import open_shard
from kiln.tokenizer import Tokenizer

# Enough tokens to hold a few words under any tokenizer (a char-level one spends one per character).
PEEK_TOKENS = 200
MAX_WORDS = 4
MAX_CHARS = 40


def opening_words(text: str, max_words: int = MAX_WORDS, max_chars: int = MAX_CHARS) -> str:
    """The start of `text` as a prompt: its first line when that is short (a speaker's name such as "ROMEO:"),
    else its first `max_words` words; never longer than `max_chars`."""
    text = text.lstrip()
    first_line = text.split("\n", 1)[0].strip()
    if first_line and len(first_line.split()) <= max_words:
        return first_line[:max_chars].rstrip()
    return " ".join(text.split()[:max_words])[:max_chars].rstrip()


def first_document_opening(train_shards: list[Path], tokenizer: Tokenizer) -> str:
    """`opening_words` of the first document in the first training shard ("" when there is no text)."""
    if not train_shards:
        return ""
    ids = [int(i) for i in open_shard(train_shards[0])[:PEEK_TOKENS]]
    special = set(tokenizer.special_tokens.values())
    while ids and ids[0] in special:  # a shard may open with the separator before its first document
        ids.pop(0)
    end = next((i for i, t in enumerate(ids) if t in special), len(ids))
    return opening_words(tokenizer.decode(ids[:end]))
