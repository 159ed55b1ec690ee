"""How good an extraction is against a human reference: bag-of-words P/R/F1 and paragraph breaks kept.

The scores of the Zyte/Scrapinghub article-extraction benchmark's word level (as the extraction dev set in
../shared/data/web/extraction-dev is scored): the extracted text and the reference `articleBody` are both cut
into lower-cased words (`\\w+`, so punctuation and spacing never count), and precision/recall are the share of
the multiset of words in common. Averaged over pages, not pooled, so a short article counts as much as a long one.

Paragraph breaks: FineWeb-style filters and training both read the line structure, so an extractor that
glues paragraphs together loses something that word F1 cannot see. For each boundary between two paragraphs
of the reference (its last `BOUNDARY_WORDS` words and the next one's first ones), found as consecutive words
in the extraction, it counts whether the extraction has a line break at that point.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

_WORD = re.compile(r"\w+")
BOUNDARY_WORDS = 3  # words each side of a paragraph boundary: enough to be unique in an article


def words(text: str) -> list[str]:
    """Lower-cased `\\w+` words."""
    return _WORD.findall(text.lower())


def bag_of_words_prf(extracted: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of the multiset of words. Empty against empty is a perfect score."""
    out, ref = Counter(words(extracted)), Counter(words(reference))
    n_out, n_ref = sum(out.values()), sum(ref.values())
    if n_out == 0 and n_ref == 0:
        return 1.0, 1.0, 1.0
    common = sum((out & ref).values())
    p = common / n_out if n_out else 0.0
    r = common / n_ref if n_ref else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _words_with_breaks(text: str) -> tuple[list[str], list[bool]]:
    """Words of `text` and, for each, whether a line break comes before it."""
    ws: list[str] = []
    breaks: list[bool] = []
    for line in text.split("\n"):
        first = True
        for w in words(line):
            breaks.append(first and bool(ws))
            ws.append(w)
            first = False
    return ws, breaks


def paragraph_breaks(extracted: str, reference: str) -> tuple[int, int]:
    """(boundaries kept as a line break, boundaries found): the reference's paragraph boundaries whose
    surrounding words appear consecutively in the extraction, and how many of those have a break there."""
    k = BOUNDARY_WORDS
    paragraphs = [words(p) for p in reference.split("\n")]
    paragraphs = [p for p in paragraphs if p]
    ws, breaks = _words_with_breaks(extracted)
    at: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(ws) - 2 * k + 1):
        at.setdefault(tuple(ws[i : i + 2 * k]), []).append(i + k)
    kept = found = 0
    for before, after in pairwise(paragraphs):
        if len(before) < k or len(after) < k:
            continue
        places = at.get(tuple(before[-k:] + after[:k]))
        if places:
            found += 1
            kept += any(breaks[i] for i in places)
    return kept, found


@dataclass(frozen=True)
class DevPage:
    """One page of an extraction dev set: its id, URL, raw HTML bytes and the human `articleBody`."""

    id: str
    url: str
    html: bytes
    reference: str


def load_dev_set(directory: str | Path) -> list[DevPage]:
    """The pages of a dev set laid out as `html/<id>.html.gz` + `ground-truth.json` (`{id: {url, articleBody}}`),
    in id order."""
    directory = Path(directory)
    truth_path = directory / "ground-truth.json"
    try:
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OSError(f"{truth_path}: cannot read the ground truth ({e})") from e
    pages = []
    for page_id in sorted(truth):
        entry = truth[page_id]
        html_path = directory / "html" / f"{page_id}.html.gz"
        try:
            html = gzip.decompress(html_path.read_bytes())
        except (OSError, EOFError) as e:
            raise OSError(f"{html_path}: cannot read the page ({e})") from e
        pages.append(DevPage(page_id, entry.get("url", ""), html, entry.get("articleBody", "")))
    return pages


__all__ = ["BOUNDARY_WORDS", "DevPage", "bag_of_words_prf", "load_dev_set", "paragraph_breaks", "words"]
