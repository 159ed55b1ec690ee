"""C4 and FineWeb quality rules: each rule shown dropping and keeping (split from test_quality_filters.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from filter_support import SENTENCES, decide, prose

from kiln.clean.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
)
from kiln.clean.filters.c4 import count_sentences
from kiln.clean.filters.fineweb import terminal_punctuation
from kiln.clean.pipeline import Document

# ------------------------------------------------------------------------------------------------ C4


def c4(text: str, **kw: object) -> tuple[str | None, str]:
    """(reason, text after the step) for FineWeb's configuration unless overridden."""
    kw = {"filter_no_terminal_punct": False, **kw}
    doc = Document("t", text)
    reason = C4QualityFilter(**kw).decide(doc)  # type: ignore[arg-type]
    return reason, doc.text


def test_c4_keeps_clean_prose_unchanged() -> None:
    assert c4(prose(6)) == (None, prose(6))


def test_c4_removes_javascript_lines() -> None:
    reason, text = c4(prose(5) + "\nPlease enable JavaScript to view the comments.")
    assert reason is None and text == prose(5)
    reason, text = c4(prose(5) + "\nPlease enable Java to view the comments.")
    assert reason is None and text.endswith("Java to view the comments.")


@pytest.mark.parametrize(
    "phrase", ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]
)
def test_c4_removes_policy_lines(phrase: str) -> None:
    reason, text = c4(prose(5) + f"\nPlease read our {phrase.title()} before you continue.")
    assert reason is None and text == prose(5)
    assert (
        C4QualityFilter(filter_policy=False)
        .clean(prose(5) + f"\nPlease read our {phrase} today.")[1]
        .endswith("today.")
    )


def test_c4_removes_lines_with_too_few_words() -> None:
    reason, text = c4("Home Page\n" + prose(5) + "\nShare it")
    assert reason is None and text == prose(5)
    reason, text = c4("Our Home Page\n" + prose(5), min_words_per_line=4)
    assert text == prose(5)
    assert c4("Our Home Page\n" + prose(5))[1].startswith("Our Home Page\n")


def test_c4_lorem_ipsum_drops_the_document() -> None:
    assert c4(prose(6) + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.")[0] == "c4_lorem_ipsum"
    # the check only sees lines that survived the line filters before it, as in datatrove: a two-word line goes
    reason, text = c4(prose(6) + "\nLorem ipsum")
    assert reason is None and text == prose(6)
    assert c4(prose(6) + "\nLorem ipsum dolor sit amet.", filter_lorem_ipsum=False)[0] is None


def test_c4_curly_bracket_drops_the_document() -> None:
    assert c4(prose(6) + "\nfunction f(x) { return x; }")[0] == "c4_curly_bracket"
    assert c4(prose(6) + "\nfunction f(x) ( return x; )")[0] is None
    assert c4(prose(6) + "\nfunction f(x) { return x; }", filter_curly_bracket=False)[0] is None


def test_c4_minimum_sentences() -> None:
    assert c4(prose(4))[0] == "c4_too_few_sentences"
    assert c4(prose(5))[0] is None
    assert c4(" ".join(SENTENCES[:5]))[0] is None  # five sentences on one line count as five
    assert c4(prose(4), min_num_sentences=4)[0] is None
    assert c4(prose(2), min_num_sentences=-1)[0] is None


def test_count_sentences_skips_abbreviations_and_ellipses() -> None:
    assert count_sentences("Mrs. Sarah P. Jones left at noon. Then she came back! Why? Nobody knows.") == 4
    assert count_sentences("It is sold in the U.S. and e.g. in Canada. Prices vary.") == 2
    assert count_sentences("Read on... it gets better") == 1
    assert count_sentences('He said "Stop." Then he left.') == 2
    assert count_sentences("") == 0


def test_c4_terminal_punctuation_rule() -> None:
    text = prose(5) + "\nClick here for more recipes like this one\nThe end is near..."
    # FineWeb turns the rule off: both lines stay
    assert c4(text)[1] == text
    # C4's own default removes lines without terminal punctuation, and lines ending in an ellipsis
    assert c4(text, filter_no_terminal_punct=True) == (None, prose(5))


def test_c4_long_words_and_citations() -> None:
    blob = "x" * 1001
    reason, text = c4(prose(5) + f"\nThe key is {blob} here.")
    assert reason is None and text == prose(5)
    assert c4(prose(5) + f"\nThe key is {'x' * 1000} here.")[1].endswith("here.")
    reason, text = c4("The river rose quickly.[1] Farmers moved their cattle.[edit]\n" + prose(4, 1))
    assert text.split("\n")[0] == "The river rose quickly. Farmers moved their cattle."


def test_c4_strips_lines_and_counts_them() -> None:
    f = C4QualityFilter(filter_no_terminal_punct=False)
    doc = Document("t", "  " + prose(5).replace("\n", "  \n\t") + "\nHome Page\nWe use cookies on this site.")
    assert f.decide(doc) is None
    assert doc.text == prose(5)
    assert f.line_stats == Counter({"total": 7, "kept": 5, "too_few_words": 1, "policy": 1})


# ------------------------------------------------------------------------------------------------ FineWeb


LONG_WORDS = [
    "Incomprehensibility",
    "Internationalization",
    "Counterrevolutionary",
    "Disproportionately",
    "Misinterpretation",
    "Uncharacteristically",
    "Telecommunications",
    "Indistinguishable",
    "Overenthusiastically",
    "Deinstitutionalization",
    "Electroencephalography",
    "Psychophysiological",
]


def test_fineweb_line_punct_ratio() -> None:
    f = FineWebQualityFilter()
    bare = [s.rstrip(".") for s in SENTENCES[:9]]
    assert decide(f, "\n".join([*bare[:8], SENTENCES[8]])) == "fineweb_line_punct_ratio"  # 1 / 9 < 0.12
    assert decide(f, "\n".join([*bare[:7], *SENTENCES[7:9]])) is None  # 2 / 9
    assert decide(FineWebQualityFilter(line_punct_thr=0.3), "\n".join([*bare[:7], *SENTENCES[7:9]])) == (
        "fineweb_line_punct_ratio"
    )
    # no punctuation at all: dropped, unless the zero case is excluded (for sources that never punctuate)
    assert decide(f, "\n".join(bare)) == "fineweb_line_punct_ratio"
    assert decide(FineWebQualityFilter(line_punct_exclude_zero=True), "\n".join(bare)) is None


def test_fineweb_terminal_punctuation_is_unicode_and_configurable() -> None:
    assert {".", "!", "?", "。", "۔", "।", "‼"} <= set(terminal_punctuation())
    assert '"' not in terminal_punctuation()
    quoted = "\n".join(f'He said "{s}"' for s in SENTENCES[:9])  # every line ends with a quote mark
    assert decide(FineWebQualityFilter(), quoted) == "fineweb_line_punct_ratio"
    # FineWeb's first release counted . ' " ! ? as line ends
    assert decide(FineWebQualityFilter(stop_chars=(".", "'", '"', "!", "?")), quoted) is None


def test_fineweb_short_line_ratio() -> None:
    f = FineWebQualityFilter()
    short = [f"Fresh item number {i} today." for i in range(10)]  # <= 30 characters each

    def text(k: int) -> str:
        return "\n".join(short[:k] + SENTENCES[: 10 - k])

    assert decide(f, text(7)) == "fineweb_short_line_ratio"  # 0.7 > 0.67
    assert decide(f, text(6)) is None
    assert decide(FineWebQualityFilter(short_line_length=10), text(7)) is None


def test_fineweb_char_dup_ratio() -> None:
    f = FineWebQualityFilter()
    assert decide(f, prose(10) + "\n" + SENTENCES[3]) == "fineweb_char_dup_ratio"  # ~80 / 900 characters
    assert decide(f, "Yes.\n" + prose(10) + "\nYes.") is None  # 4 / 800 < 0.01
    assert decide(FineWebQualityFilter(char_duplicates_ratio=0.2), prose(10) + "\n" + SENTENCES[3]) is None
    assert decide(f, prose(10) + "\n\n\n" + prose(1)) == "fineweb_char_dup_ratio"  # blank lines do not count


def test_fineweb_list_ratio() -> None:
    f = FineWebQualityFilter()
    pairs = [f"{a} {b.lower()}." for a in LONG_WORDS[:6] for b in LONG_WORDS[6:]]  # 3 tokens, > 30 characters
    pairs = [p for p in pairs if len(p) > 30][:12]
    assert len(pairs) == 12
    assert decide(f, "\n".join(pairs)) == "fineweb_list_ratio"  # 11 newlines / 36 tokens = 0.31
    triples = [p[:-1] + " indeed." for p in pairs]  # 4 tokens a line: 11 / 48
    assert decide(f, "\n".join(triples)) is None
    assert decide(FineWebQualityFilter(new_line_ratio=0.5), "\n".join(pairs)) is None


def test_fineweb_empty() -> None:
    assert decide(FineWebQualityFilter(), " \n\n \t\n") == "empty"
