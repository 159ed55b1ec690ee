"""Where a continuation starts and where it ends, for every caller that samples text: `kiln generate`, the server's
completions and the end-of-training sample share these, so the same seed gives the same text everywhere.

A base model knows one context to start from when given no prompt: a document boundary. That is <|endoftext|>
for a vocabulary that has it (the token shards put one between documents), else a newline (a char- or
byte-level model's corpus is lines of text). The same token ends a sample: the model saying "this document
is over" is the end of the text, not more text to print.
"""

from __future__ import annotations

from typing import Any

ENDOFTEXT = "<|endoftext|>"


def end_of_text_ids(tokenizer: Any) -> tuple[int, ...]:
    """The token id(s) that end a document: the tokenizer's own end-of-text (an imported Llama 3's
    <|end_of_text|>, say), else <|endoftext|> if its vocabulary has one; () for char and byte vocabularies."""
    if tokenizer is None:
        return ()
    eos = getattr(tokenizer, "eot_id", None)
    if eos is None:
        eos = tokenizer.special_tokens.get(ENDOFTEXT)
    return () if eos is None else (eos,)


def start_ids(tokenizer: Any) -> list[int]:
    """The context a sample starts from when no prompt is given: the end-of-text token, else a newline.
    ValueError when the vocabulary has neither (a char vocabulary without "\\n")."""
    eos = end_of_text_ids(tokenizer)
    if eos:
        return [eos[0]]
    try:
        ids = tokenizer.encode("\n")
    except ValueError:
        ids = []
    if not ids:
        raise ValueError("the prompt is empty and this vocabulary has no <|endoftext|> or newline to start from")
    return ids


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """`text` as token ids, or the default start when it is empty (or encodes to nothing)."""
    ids = tokenizer.encode(text) if text else []
    return ids or start_ids(tokenizer)
