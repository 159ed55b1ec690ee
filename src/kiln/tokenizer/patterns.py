"""Pre-tokenization split patterns: the regex that cuts text into chunks before BPE merges within each chunk.

BPE never merges across a chunk boundary, so the pattern decides what a token can be: GPT-2's keeps a
leading space with each word and lets digits run together; GPT-4's (cl100k) makes contractions case-blind,
caps number chunks at three digits and keeps newlines apart from words; o200k splits camelCase words and
knows more scripts. The strings are exactly tiktoken's, so kiln's encodings match OpenAI's byte for byte.
"""

from __future__ import annotations

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)

O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "o200k": O200K_PATTERN}


def resolve_pattern(name_or_regex: str) -> str:
    """'gpt2' | 'gpt4' | 'o200k' -> the pattern; anything else is taken as a regex (checked to compile)."""
    if name_or_regex in PATTERNS:
        return PATTERNS[name_or_regex]
    import regex

    try:
        regex.compile(name_or_regex)
    except regex.error as e:
        raise ValueError(
            f"split pattern {name_or_regex!r} is neither a known name ({', '.join(PATTERNS)}) nor a valid regex: {e}"
        ) from None
    return name_or_regex


def split_text(text: str, pattern: str) -> list[str]:
    """The chunks `pattern` cuts `text` into (the `regex` module speaks the same dialect as tiktoken's
    fancy-regex: \\p{..} classes, possessive quantifiers, lookahead)."""
    import regex

    return regex.findall(pattern, text)
