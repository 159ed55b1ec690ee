"""Train a byte-level BPE vocabulary: rustbpe for speed, or kiln's Python reference to read and check.

Why rustbpe: on the 32 MB benchmark corpus (docs/benchmarks.md) it trains 8k and 32k vocabularies about twice
as fast as HF tokenizers' BpeTrainer, it works on raw bytes with any split pattern (HF needs a byte-to-unicode
detour), and its merge rule (most frequent pair, ties to the smallest pair) is simple enough that the reference
trainer reproduces it merge for merge, which the tests check. Both give a `BPETokenizer` that encodes with
tiktoken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from kiln.tokenizer.bpe import ENDOFTEXT, BPETokenizer
from kiln.tokenizer.bpe_reference import merges_to_ranks, train_reference
from kiln.tokenizer.patterns import resolve_pattern

Trainer = Literal["rustbpe", "reference"]


# The largest vocabulary kiln trains: 2**24 = 16,777,216 ids, 64 times the largest vocabularies in use (~262k).
# Token ids are stored as uint32 (shards) and counted in u32 (rustbpe), so 2**32 is the hard ceiling, but every id
# is also a row of the model's embedding and output layer: at 16.7M rows a 768-wide model's embedding alone is
# 51 GB of fp32, so anything above is a typo (an extra digit), refused before reading the corpus or allocating.
MAX_VOCAB_SIZE = 2**24


def check_vocab_size(vocab_size: int, special_tokens: Sequence[str]) -> int:
    """The number of merges `vocab_size` leaves after the 256 byte tokens and the specials, or a clear error."""
    if vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size {vocab_size:,} is too large: at most {MAX_VOCAB_SIZE:,} (2**24; every id is a row of the "
            "model's embedding, and the largest vocabularies in use hold ~262k)"
        )
    floor = 256 + len(special_tokens)
    if vocab_size < floor + 1:
        raise ValueError(
            f"vocab_size {vocab_size} is too small: a byte-level BPE vocabulary holds the 256 byte tokens"
            f" plus {len(special_tokens)} special token(s) ({floor}) and at least one merge"
        )
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special tokens must be distinct, got {list(special_tokens)}")
    for name in special_tokens:
        if not name:
            raise ValueError("a special token needs a non-empty name")
    return vocab_size - floor


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    pattern: str = "gpt4",
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    trainer: Trainer = "rustbpe",
    name: str = "kiln-bpe",
) -> BPETokenizer:
    """Learn `vocab_size` tokens (bytes + merges + specials, in that id order) from `texts`.

    `pattern` is 'gpt4' (default), 'gpt2', 'o200k' or a regex. An empty corpus is an error; a corpus too
    small to supply every merge gives a smaller vocabulary, as rustbpe does (the caller can see vocab_size).
    """
    num_merges = check_vocab_size(vocab_size, special_tokens)
    regex = resolve_pattern(pattern)
    counted = _NonEmpty(texts)
    if trainer == "rustbpe":
        import rustbpe

        core = rustbpe.Tokenizer()
        try:
            core.train_from_iterator(counted, 256 + num_merges, pattern=regex)
        except UnicodeError as e:
            raise _not_unicode(e, counted) from None
        except ValueError as e:
            raise ValueError(f"rustbpe rejected the split pattern: {e}") from None
        ranks: dict[bytes, int] = {}
        for token, rank in sorted(core.get_mergeable_ranks(), key=lambda tr: tr[1]):
            ranks.setdefault(bytes(token), rank)
    elif trainer == "reference":
        try:
            ranks = merges_to_ranks(train_reference(counted, num_merges, regex))
        except UnicodeError as e:
            raise _not_unicode(e, counted) from None
    else:
        raise ValueError(f"unknown trainer {trainer!r}; use 'rustbpe' or 'reference'")
    if not counted.saw_text:
        raise ValueError("cannot train a tokenizer on an empty corpus (no text in any document)")
    first_special = max(ranks.values()) + 1
    specials = {s: first_special + i for i, s in enumerate(special_tokens)}
    return BPETokenizer(ranks, regex, specials, name)


def _not_unicode(e: UnicodeError, counted: _NonEmpty) -> ValueError:
    """The corpus's fault, not the split pattern's: a text holds a lone surrogate, which is not a character."""
    reason = getattr(e, "reason", str(e))
    return ValueError(
        f"a training text (one of the first {counted.count}) is not valid Unicode ({reason}): "
        "fix or drop it in the corpus"
    )


class _NonEmpty:
    """Passes the texts through (to either trainer) and notes whether any had content."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._texts = iter(texts)
        self.saw_text = False
        self.count = 0  # texts handed on so far (the last one is the one being trained on)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = next(self._texts)
        self.count += 1
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}")
        if text and not self.saw_text:
            self.saw_text = True
        return text
