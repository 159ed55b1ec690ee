"""C4's line and page heuristics (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", section 2.2), with datatrove's defaults and semantics. FineWeb (Penedo et al. 2024)
runs it as `C4QualityFilter(filter_no_terminal_punct=False)`: keeping only lines that end in punctuation
removed too much good text, so FineWeb replaced that rule with its own softer line-punctuation ratio
(`kiln.clean.filters.fineweb`). C4's bad-words list is not implemented here.
"""

from __future__ import annotations

import re
from collections import Counter

from kiln.clean.pipeline import Document, Step

CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")  # Wikipedia-style "[12]", "[edit]"
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_POLICY_RE = re.compile("|".join(map(re.escape, POLICY_SUBSTRINGS)))
# A sentence ends at "." (not part of an ellipsis, not after a title or an initial) or a run of "!"/"?", then any
# closing quotes or brackets, then whitespace and more text.
_NOT_ABBREVIATION = "".join(
    f"(?<!\\b{a}\\.)" for a in ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "vs", "No", "Inc", "Ltd", "Co")
)
# the punctuation comes first so the engine only tries the lookbehinds where there is a "." (10x faster)
_SENTENCE_BREAK_RE = re.compile(
    r"(?:\.(?!\.)(?<!\.\.)(?<!\b[A-Z]\.)(?<!\.[A-Za-z]\.)" + _NOT_ABBREVIATION + r"|[!?]+)[\"'’”)\]]*\s+(?=\S)"
)


def count_sentences(line: str) -> int:
    """Sentences in one (stripped) line: 1 + the sentence breaks inside it, 0 for an empty line.

    datatrove counts them with a sentence splitter (spaCy's rule-based sentencizer in datatrove 0.10, nltk's
    Punkt model before). Like them, this regex does not break at an ellipsis ("...", "....") or after a title
    ("Mr.", "Dr.", "No."), an initial ("J. Smith") or a dotted abbreviation ("e.g.", "U.S."); unlike them it
    knows no other abbreviations. It only matters for pages with about `min_num_sentences` sentences."""
    if not line:
        return 0
    return 1 + len(_SENTENCE_BREAK_RE.findall(line))


class C4QualityFilter(Step):
    """Remove boilerplate lines and drop pages that are not prose, as C4 did.

    Origin: C4 (Raffel et al. 2020, section 2.2, and the TensorFlow Datasets `c4_utils.py` implementation);
    semantics and defaults as in datatrove. Why: a page's text still carries navigation, cookie banners,
    "enable JavaScript" notices and code after extraction; dropping those lines keeps the prose, and pages
    with placeholder text, code, or almost no sentences are not worth keeping at all.

    Each line is stripped, then, in order:
    - dropped if it has a word longer than `max_word_length` (1000) characters (minified code, base64);
    - Wikipedia citation marks are removed (`remove_citations`);
    - dropped if it does not end in . ? ! " ' or ends in "..." (`filter_no_terminal_punct`; FineWeb: off);
    - dropped if it has fewer than `min_words_per_line` (3) words;
    - the whole document is dropped (`c4_lorem_ipsum`) if it contains "lorem ipsum" (placeholder pages);
    - dropped if it contains "javascript" (noscript notices);
    - the whole document is dropped (`c4_curly_bracket`) if it contains "{" (code, CSS, templates);
    - dropped if it contains a policy phrase ("terms of use", "privacy policy", "cookie policy", "uses cookies",
      "use of cookies", "use cookies").
    The document is dropped (`c4_too_few_sentences`) if the kept lines hold fewer than `min_num_sentences` (5)
    sentences; otherwise its text becomes the kept lines joined by newlines. The document-level checks only see
    lines that survived the line filters before them, as in datatrove. Counts of removed lines by reason are in
    `line_stats`. Setting an int threshold to -1 disables it, as in datatrove.
    """

    name = "c4_quality"

    def __init__(
        self,
        *,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_num_sentences: int = 5,
        min_words_per_line: int = 3,
        max_word_length: int = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
    ) -> None:
        super().__init__()
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_javascript = filter_javascript
        self.filter_curly_bracket = filter_curly_bracket
        self.filter_policy = filter_policy
        self.line_stats: Counter[str] = Counter()  # lines seen, kept and removed by reason, over all documents

    def clean(self, text: str) -> tuple[str | None, str]:
        """(reason to drop the document or None, the text with the bad lines removed). Pure: counts lines in
        `line_stats` but does not touch any document."""
        kept: list[str] = []
        sentences = 0
        removed: Counter[str] = Counter()
        lines = text.splitlines()
        max_len = self.max_word_length
        count_sents = self.min_num_sentences != -1
        reason: str | None = None
        for raw in lines:
            line = raw.strip()
            words = line.split()
            if max_len != -1 and len(line) > max_len and max(map(len, words)) > max_len:
                removed["too_long_word"] += 1
                continue
            if self.remove_citations and "[" in line:
                line = CITATION_RE.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
                removed["no_terminal_punct"] += 1
                continue
            if len(words) < self.min_words_per_line:  # words counted before citations were removed, as datatrove
                removed["too_few_words"] += 1
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                reason = "c4_lorem_ipsum"
                break
            if self.filter_javascript and "javascript" in lower:
                removed["javascript"] += 1
                continue
            if self.filter_curly_bracket and "{" in line:
                reason = "c4_curly_bracket"
                break
            if self.filter_policy and _POLICY_RE.search(lower):
                removed["policy"] += 1
                continue
            if count_sents and sentences < self.min_num_sentences:  # enough is enough: more cannot change it
                sentences += count_sentences(line)
            kept.append(line)
        self.line_stats["total"] += len(lines)
        self.line_stats["kept"] += len(kept)
        self.line_stats.update(removed)
        if reason is None and sentences < self.min_num_sentences:
            reason = "c4_too_few_sentences"
        if reason is not None:
            return reason, text
        return None, "\n".join(kept).strip()

    def decide(self, doc: Document) -> str | None:
        """Drop the document, or keep it with its bad lines removed (this step rewrites `doc.text`)."""
        reason, text = self.clean(doc.text)
        if reason is None:
            doc.text = text
        return reason
