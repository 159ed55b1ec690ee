"""Token ids a user typed (`kiln tokenizer decode`, `kiln generate prompt_ids=...`): each must be in the vocabulary.

Decoding an id past the vocabulary would otherwise give a replacement character (byte tokenizers), an
IndexError from deep inside a tokenizer, or an embedding lookup that crashes the model; the user needs the id and
the size instead.
"""

from __future__ import annotations

from collections.abc import Iterable


def check_token_ids(
    ids: Iterable[int], vocab_size: int, what: str = "the vocabulary", param: str | None = None
) -> list[int]:
    """`ids` as a list if every one is in 0..vocab_size-1; ValueError naming the first one that is not, the size
    of `what` (the vocabulary it was checked against) and `param` (the setting that held the ids), if given."""
    ids = list(ids)
    bad = next((i for i in ids if not 0 <= i < vocab_size), None)
    if bad is not None:
        where = f"{param}: " if param else ""
        raise ValueError(f"{where}token id {bad} is out of range: {what} has {vocab_size} ids (0 to {vocab_size - 1})")
    return ids
