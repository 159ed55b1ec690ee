"""Gopher's quality and repetition filters (Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", appendix A.1.1 and table A1), with datatrove's defaults and semantics as
FineWeb (Penedo et al. 2024) ran them (`examples/fineweb.py`: both filters with their default arguments).

Words. datatrove splits text into words with a real tokenizer: nltk's `word_tokenize` when FineWeb was made,
spaCy's rule-based English tokenizer (`spacy.blank("en")`) in current datatrove (0.10). Both are accurate but slow
(milliseconds per page), and nltk needs model files. kiln uses one regular expression, `split_words`, that
imitates them closely enough for ratios and thresholds:

- a word is a run of word characters, kept whole across inner hyphens and dots (`well-known`, `3.5`, `x.com`,
  as nltk does) and across `,` `:` `/` between digits (`1,000`, `10:30`, `9/11`, as both do);
- dotted abbreviations keep their final dot (`U.S.`, `e.g.`, `a.m.`), as both do;
- a clitic after a word is a word of its own (`John's` -> `John` `'s`, `don't` -> `don` `'t`): the same number
  of words and characters as nltk's and spaCy's `do` `n't`;
- every other non-space character is a token of its own, except runs of dots (`...`) and `--`.

Known differences: spaCy splits hyphenated words (`well` `-` `known`) and slashes between words, keeps URLs
and e-mail addresses whole, and knows more abbreviations ("Mr.", "Inc."), whose dot becomes a separate token
here; nltk turns `"` into two-character quote tokens (still symbols). On English web text the word counts and
ratios move by about a percent; only documents within a hair of a threshold decide differently. Measured against
datatrove 0.10.1 (with either tokenizer) on 300 C4 pages and 300 copies with web junk added, each filter made
the same keep/drop decision on at least 97% of the documents.

Speed (the same decisions as the plain definitions, which the tests check on random texts): the last few texts'
words are cached (`split_words` is an LRU cache), so the two Gopher filters, which run one after the other on
the same text, split it once; the top n-gram counts for n = 2, 3, 4 and the duplicated n-gram scans for
n = 5..10 each look only where the n-gram one shorter repeats (`top_ngram_stats`); per-token facts (symbol or
word, has a letter) come from tables filled on a token's first sight, summed in C.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import compress

import regex

from kiln.clean.pipeline import Document, Step

_WORD_RE = re.compile(
    r"(?:[^\W\d_]\.){2,}"  # dotted abbreviations keep their dots: "U.S.", "e.g.", "a.m."
    r"|\w+(?:[-.]\w+|[,:/]\d+)*"  # words, kept whole across inner - and . ("well-known", "3.5", "x.com"), numbers
    # across , : / between digits ("1,000", "10:30", "9/11")
    r"|(?<=\w)['’]\w+"  # a clitic after a word is its own word: "don't" -> "don" "'t", "John's" -> "John" "'s"
    r"|\.{2,}|--|[^\w\s]"  # punctuation: runs of dots ("...") and "--" whole, any other symbol alone
)
# The same matches, each with the whitespace before it skipped in one step: no token starts with whitespace and
# one always starts at the next non-space character, so findall's group is exactly `_WORD_RE`'s tokens, found
# without trying (and failing) every alternative at every space (25% faster).
_WORD_SCAN_RE = re.compile(rf"\s*({_WORD_RE.pattern})")
_ALPHA_RE = re.compile(r"[^\W\d_]")  # a letter: a word character that is neither a digit nor "_"


@lru_cache(maxsize=8)
def split_words(text: str) -> tuple[str, ...]:
    """The words and punctuation tokens of `text`, an approximation of nltk's `word_tokenize` (see the module
    docstring). Cached for the last few texts because several filters in a row split the same document."""
    return tuple(_WORD_SCAN_RE.findall(text))


def _symbol_chars() -> frozenset[str]:
    """Characters that make a token a "symbol" rather than a word: ASCII punctuation, every Unicode
    punctuation character (category P*), control characters, and a few symbols web pages use as separators.
    datatrove's hand-written PUNCTUATION_SET covers nearly the same characters."""
    every = "".join(map(chr, range(0x20000)))  # the BMP and the SMP hold all punctuation
    chars = set(regex.findall(r"\p{P}", every)) | set(string.punctuation) | set("►━´∶～")
    chars |= {chr(c) for c in (*range(0, 32), *range(127, 160))}
    return frozenset(chars)


SYMBOL_CHARS = _symbol_chars()


def is_symbol(token: str) -> bool:
    """True for a token made only of punctuation (".", "--", "..."), which is not counted as a word."""
    return token[0] in SYMBOL_CHARS and all(c in SYMBOL_CHARS for c in token)


def has_alpha(token: str) -> bool:
    """True when the token has at least one letter (Gopher: "80% of words contain an alphabetic character")."""
    return token.isalpha() or _ALPHA_RE.search(token) is not None


class _TokenTable(dict[str, int]):
    """token -> a number computed from the token alone, on its first lookup; summed over a document's tokens
    with `sum(map(table.__getitem__, tokens))`, which runs in C once the vocabulary has been seen (web text
    repeats its words: a page adds few new ones). Emptied when it reaches `limit` entries, to bound memory."""

    def __init__(self, fn: Callable[[str], int], limit: int = 1 << 18) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, token: str) -> int:
        if len(self) >= self.limit:
            self.clear()
        value = self[token] = self.fn(token)
        return value


_IS_SYMBOL = _TokenTable(lambda t: int(is_symbol(t)))
_SYMBOL_LEN = _TokenTable(lambda t: len(t) if is_symbol(t) else 0)
_HAS_ALPHA = _TokenTable(lambda t: int(has_alpha(t)))


def find_duplicates(items: Sequence[str]) -> tuple[int, int]:
    """(how many items repeat an earlier one, their total length in characters): the first copy of a line or
    paragraph is content, every later copy is repetition.

    Counted without a Python step per item: each distinct item has exactly one first copy, so the repeats
    are all items minus the distinct ones, in number and in characters."""
    distinct = set(items)
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All n-grams of `words` as tuples (built by C-level zip, no Python loop; str hashes are cached, so
    hashing a tuple of words is cheaper than joining them into a new string)."""
    return list(zip(*(words[i:] for i in range(n)), strict=False))


def top_ngram_chars(words: Sequence[str], n: int) -> int:
    """Characters covered by the most frequent n-gram: its length (words joined by spaces) times its count.
    On ties the n-gram seen first wins, as with datatrove's `Counter.most_common(1)`."""
    return top_ngram_stats(words, n)[0]


def top_ngram_stats(words: Sequence[str], n: int, candidates: Sequence[int] | None = None) -> tuple[int, list[int]]:
    """(`top_ngram_chars(words, n)`, positions of every n-gram that occurs twice or more, ascending).

    `candidates`, when given, must hold (at least) every position whose n-gram occurs twice or more, in
    ascending order: the positions returned for n-1 do, since a repeated n-gram starts with a repeated
    (n-1)-gram. Only those n-grams are counted then, which changes nothing: the most frequent n-gram is a
    repeated one if any n-gram repeats (all its copies are candidates, so its count and its first position
    are the same), and otherwise every n-gram occurs once and the first one, at position 0, wins the tie.
    The cascade n = 2, 3, 4 thus counts fewer n-grams at each step, and its last positions bound those of
    `duplicated_ngram_chars` for n = 5..10."""
    m = len(words) - n + 1
    if m <= 0:
        return 0, []
    positions: Sequence[int]
    if candidates is None:
        positions = range(m)
        grams = _ngrams(words, n)
    else:
        positions = [p for p in candidates if p < m]
        grams = [tuple(words[p : p + n]) for p in positions]
    counts = Counter(grams)
    if len(counts) == len(grams):  # no n-gram repeats: all occur once and the first one wins
        return sum(map(len, words[:n])) + n - 1, []
    top = max(counts.values())
    gram = next(g for g, c in counts.items() if c == top)  # the first seen of the most frequent, as most_common
    repeated = list(compress(positions, map((1).__lt__, map(counts.__getitem__, grams))))
    return (sum(map(len, gram)) + n - 1) * top, repeated


def duplicated_ngram_chars(words: Sequence[str], n: int, candidates: list[int] | None = None) -> tuple[int, list[int]]:
    """(characters in n-grams that repeat an earlier n-gram, positions of every n-gram that occurs twice or more).

    Gopher's definition, as datatrove scans it: walk the n-grams left to right; one already seen adds its
    characters (words joined without spaces) and the scan jumps past its n words, so overlapping repeats are
    not counted twice; otherwise it is remembered and the scan moves one word on.

    The same result without a Python step per word: an n-gram that occurs once never matches anything, so
    visiting it or jumping over it changes nothing, and only the positions of n-grams that occur twice or
    more need the scan (usually a handful; none on most clean text). Those positions are found with dicts
    of first and last occurrence, in C. A repeated n-gram starts with a repeated (n-1)-gram, so the positions
    returned for a smaller n are a valid `candidates` superset for a larger one, and checking n = 5..10 costs
    little more than n = 5.

    Unlike datatrove, n-grams compare as word sequences: datatrove compares the words joined without a
    separator, so "ab c" and "a bc" (or "." "..." and "..." ".") count as the same n-gram there.
    """
    m = len(words) - n + 1
    if m <= 0:
        return 0, []
    if candidates is None:
        positions: Sequence[int] = range(m)
        grams = _ngrams(words, n)
    else:
        positions = [p for p in candidates if p < m]
        grams = [tuple(words[p : p + n]) for p in positions]
    last = dict(zip(grams, positions, strict=True))
    if len(last) == len(grams):  # nothing repeats
        return 0, []
    first = dict(zip(reversed(grams), reversed(positions), strict=True))
    # a position that is both the first and the last occurrence of its n-gram holds a unique n-gram
    repeated = sorted(set(positions) - (set(first.values()) & set(last.values())))
    gram_at = dict(zip(positions, grams, strict=True))
    seen: set[tuple[str, ...]] = set()
    chars = nxt = 0
    for p in repeated:
        if p < nxt:  # inside the span of a repeat just counted
            continue
        gram = gram_at[p]
        if gram in seen:
            chars += sum(map(len, gram))
            nxt = p + n
        else:
            seen.add(gram)
            nxt = p + 1
    return chars, repeated


_PARAGRAPH_RE = re.compile(r"\n{2,}")
_LINES_RE = re.compile(r"\n+")


MAX_NGRAM = 100  # words in an n-gram of the repetition rules (Gopher's go up to 10)


class GopherRepetitionFilter(Step):
    """Drop documents that repeat themselves: duplicate lines or paragraphs, one n-gram covering much of the
    text, or many repeated long n-grams.

    Origin: Gopher (Rae et al. 2021, "Scaling Language Models", appendix A.1.1, table A1); thresholds as in
    datatrove, which FineWeb used unchanged. Why: repetitive pages (navigation menus, tag clouds, spam, pages
    that print the same item list many times) teach a model to loop and repeat, and Gopher found that
    removing them improved downstream quality. Checks run in this order and the first failure is the reason:

    - `dup_para_frac` / `dup_para_char_frac`: paragraphs (split on blank lines) that repeat an earlier one, as a
      fraction of paragraphs (> 0.30) and their characters as a fraction of the text (> 0.20);
    - `dup_line_frac` / `dup_line_char_frac`: the same for lines (> 0.30, > 0.20);
    - `top_{n}_gram`: the most frequent n-gram's characters times its count, over the text's length, for
      n = 2, 3, 4 (> 0.20, 0.18, 0.16);
    - `duplicated_{n}_n_grams`: characters in repeated n-grams over the text's length for n = 5..10
      (> 0.15 .. 0.10).

    Any threshold set to None (or 0) is skipped; an empty text is dropped as `empty`. Note that a very short
    text fails `top_2_gram` (one 2-gram is most of it), as in datatrove: run a length filter first or accept it.
    """

    name = "gopher_repetition"

    def __init__(
        self,
        *,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: Sequence[tuple[int, float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: Sequence[tuple[int, float]] = (
            (5, 0.15),
            (6, 0.14),
            (7, 0.13),
            (8, 0.12),
            (9, 0.11),
            (10, 0.10),
        ),
    ) -> None:
        super().__init__()
        self.dup_line_frac = dup_line_frac
        self.dup_para_frac = dup_para_frac
        self.dup_line_char_frac = dup_line_char_frac
        self.dup_para_char_frac = dup_para_char_frac
        for option, pairs in (("top_n_grams", top_n_grams), ("dup_n_grams", dup_n_grams)):
            for pair in pairs:
                if len(pair) != 2 or not 1 <= pair[0] <= MAX_NGRAM:
                    raise ValueError(f"{option}: each entry is [n-gram size 1..{MAX_NGRAM}, fraction], got {pair}")
        self.top_n_grams = tuple(tuple(p) for p in top_n_grams)
        self.dup_n_grams = tuple(tuple(p) for p in dup_n_grams)

    def decide(self, doc: Document) -> str | None:
        text = doc.text
        if not text:
            return "empty"
        length = len(text)

        paragraphs = _PARAGRAPH_RE.split(text.strip())
        dups, chars = find_duplicates(paragraphs)
        if self.dup_para_frac and dups / len(paragraphs) > self.dup_para_frac:
            return "dup_para_frac"
        if self.dup_para_char_frac and chars / length > self.dup_para_char_frac:
            return "dup_para_char_frac"

        lines = _LINES_RE.split(text)
        dups, chars = find_duplicates(lines)
        if self.dup_line_frac and dups / len(lines) > self.dup_line_frac:
            return "dup_line_frac"
        if self.dup_line_char_frac and chars / length > self.dup_line_char_frac:
            return "dup_line_char_frac"

        words = split_words(text)
        # n -> positions of the n-grams that occur twice or more: those of the largest n below bound a larger n's
        repeated: dict[int, list[int]] = {}
        for n, frac in self.top_n_grams:
            if frac:
                chars, repeated[n] = top_ngram_stats(words, n, _candidates(repeated, n))
                if chars / length > frac:
                    return f"top_{n}_gram"
        for n, frac in self.dup_n_grams:
            chars, repeated[n] = duplicated_ngram_chars(words, n, _candidates(repeated, n))
            if frac and chars / length > frac:
                return f"duplicated_{n}_n_grams"
        return None


def _candidates(repeated: dict[int, list[int]], n: int) -> list[int] | None:
    """The repeated positions known for the largest n' < n (a superset of the repeated n-grams'), else None."""
    below = [k for k in repeated if k < n]
    return repeated[max(below)] if below else None


STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class GopherQualityFilter(Step):
    """Drop documents that do not look like natural-language prose.

    Origin: Gopher (Rae et al. 2021, "Scaling Language Models", appendix A.1.1); thresholds as in datatrove,
    which FineWeb used unchanged. Why: these cheap statistics catch most non-prose that survives extraction —
    word lists, tables of numbers, code, link farms, truncated teasers ("Read more..."), bullet-only pages —
    without a model. Checks run in this order and the first failure is the reason:

    - `gopher_short_doc` / `gopher_long_doc`: fewer than 50 or more than 100,000 words (punctuation tokens
      are not words);
    - `gopher_below_avg_threshold` / `gopher_above_avg_threshold`: mean word length outside [3, 10];
    - `gopher_too_many_hashes` / `gopher_too_many_ellipsis`: "#" or "..."/"…" occurrences per token > 0.1;
    - `gopher_too_many_bullets`: more than 90% of lines start with "•" or "-";
    - `gopher_too_many_end_ellipsis`: more than 30% of lines end with "..." or "…";
    - `gopher_below_alpha_threshold`: fewer than 80% of tokens contain a letter;
    - `gopher_enough_stop_words`: fewer than 2 distinct English stop words ("the", "be", "to", "of", "and",
      "that", "have", "with"; lower case, as datatrove matches them) — real English sentences use them.

    As in datatrove, the symbol, alpha and stop-word ratios divide by all tokens, punctuation included. Any
    threshold set to None (or 0) is skipped.
    """

    name = "gopher_quality"

    def __init__(
        self,
        *,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        max_non_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.min_doc_words = min_doc_words
        self.max_doc_words = max_doc_words
        self.min_avg_word_length = min_avg_word_length
        self.max_avg_word_length = max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        # datatrove's name; it is the minimum fraction of tokens that must contain a letter
        self.max_non_alpha_words_ratio = max_non_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = frozenset(STOP_WORDS if stop_words is None else stop_words)

    def decide(self, doc: Document) -> str | None:
        text = doc.text
        tokens = split_words(text)
        n_tokens = len(tokens)
        n_words = n_tokens - sum(map(_IS_SYMBOL.__getitem__, tokens))  # punctuation tokens are not words

        if self.min_doc_words and n_words < self.min_doc_words:
            return "gopher_short_doc"
        if self.max_doc_words and n_words > self.max_doc_words:
            return "gopher_long_doc"
        if not n_words:  # only reachable with min_doc_words disabled; every ratio below would divide by zero
            return "empty"

        mean_len = (sum(map(len, tokens)) - sum(map(_SYMBOL_LEN.__getitem__, tokens))) / n_words
        if self.min_avg_word_length and mean_len < self.min_avg_word_length:
            return "gopher_below_avg_threshold"
        if self.max_avg_word_length and mean_len > self.max_avg_word_length:
            return "gopher_above_avg_threshold"

        if self.max_symbol_word_ratio:
            if text.count("#") / n_tokens > self.max_symbol_word_ratio:
                return "gopher_too_many_hashes"
            if (text.count("...") + text.count("…")) / n_tokens > self.max_symbol_word_ratio:
                return "gopher_too_many_ellipsis"

        lines = text.splitlines()
        if self.max_bullet_lines_ratio:
            bullets = sum(1 for line in lines if line.lstrip().startswith(("•", "-")))
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return "gopher_too_many_bullets"
        if self.max_ellipsis_lines_ratio:
            ellipses = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
            if ellipses / len(lines) > self.max_ellipsis_lines_ratio:
                return "gopher_too_many_end_ellipsis"

        if self.max_non_alpha_words_ratio:
            alpha = sum(map(_HAS_ALPHA.__getitem__, tokens))
            if alpha / n_tokens < self.max_non_alpha_words_ratio:
                return "gopher_below_alpha_threshold"

        if self.min_stop_words and len(self.stop_words.intersection(tokens)) < self.min_stop_words:
            return "gopher_enough_stop_words"
        return None
