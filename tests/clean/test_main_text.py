"""main_text, the default extraction engine: what it keeps and drops on small pages built to show one rule each,
that every bundled page (WARC samples and the Python docs site) still extracts within the per-page time limit,
that hostile pages get a reason and never a crash, and its quality on the extraction dev set."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest

import kiln
from kiln.acquire.warc import IngestStats, iter_records
from kiln.clean.extract import DEFAULT_ENGINE, Extractor, decode_html, extract_main_text, extract_resiliparse, tidy
from kiln.clean.extract_quality import bag_of_words_prf, load_dev_set, paragraph_breaks
from kiln.clean.pipeline import Document, run_steps

QUICKSTART = Path(kiln.__file__).parent / "assets" / "quickstart"
PER_PAGE_LIMIT = 5.0  # seconds: Extractor's default `timeout`
REASONS = {"extract_empty", "extract_too_large", "extract_binary"}  # never error, timeout or crash

PROSE = [
    "The kiln was fired for thirty hours, and the team fed it split pine every few minutes through the night.",
    "By the second morning the cones at the back had bent, which meant the stoneware glazes had matured fully.",
    "Cooling took two more days; the door was unbricked slowly so that the pots would not crack from the draught.",
    "Most of the celadon pieces came out a clear green, while the pots near the firebox carried heavy ash glaze.",
]


def page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"


def paragraphs(texts: list[str]) -> str:
    return "".join(f"<p>{t}</p>" for t in texts)


def text_of(body: str) -> str:
    return tidy(extract_main_text(page(body)))


def test_main_text_is_the_default_and_the_old_one_stays_selectable():
    assert DEFAULT_ENGINE == "main_text"
    assert Extractor().engine == "main_text" and Extractor("resiliparse", timeout=None).engine == "resiliparse"


def test_the_article_is_kept_with_its_structure_and_the_page_chrome_dropped():
    body = f"""
    <header><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/shop">Shop the pottery store</a></nav></header>
    <div class="cookie-banner"><p>We use cookies to improve your experience on our site. Accept all cookies?</p></div>
    <div class="layout">
      <article>
        <h1>A week at the anagama</h1>
        <div class="share-tools"><a href="#">Share on Facebook</a> <a href="#">Share on Twitter</a></div>
        {paragraphs(PROSE[:2])}
        <h2>Unpacking the kiln</h2>
        <ul><li>Forty-two pots survived the firing intact</li><li>Three cracked in the cooling</li></ul>
        {paragraphs(PROSE[2:])}
      </article>
      <aside class="sidebar"><h3>Most read</h3>
        <p>Ten glazes every potter should try before the summer is out</p></aside>
      <section id="comments">
        <p>Great article, I visited this kiln last year and it was amazing to watch them.</p></section>
      <div class="related-articles"><p>How to build a small wood kiln in your back garden in a weekend</p></div>
    </div>
    <footer><p>Copyright 2024 Pottery Weekly. All rights reserved. Registered in England and Wales.</p></footer>
    """
    text = text_of(body)
    lines = [line.strip() for line in text.splitlines()]
    for sentence in PROSE:
        assert sentence in lines  # each paragraph whole, on a line of its own
    assert "A week at the anagama" in lines and "Unpacking the kiln" in lines  # headings kept as lines
    assert any(line.endswith("Forty-two pots survived the firing intact") for line in lines)  # list items too
    for chrome in ("Shop the pottery store", "cookies", "Share on", "Ten glazes", "Great article", "back garden"):
        assert chrome not in text, chrome
    assert "All rights reserved" not in text
    assert text.index(PROSE[0]) < text.index("Unpacking the kiln") < text.index(PROSE[2])  # in page order


def test_a_form_wrapping_the_whole_page_is_not_taken_for_boilerplate():
    # ASP.NET pages put the whole body in one <form>; forms are otherwise dropped (search boxes, sign-ups).
    body = f"""<form id="aspnetForm"><div class="menu"><a href="/">Home</a></div>
    <div class="main">{paragraphs(PROSE)}</div>
    <form class="search"><p>Search the site for articles, glazes, kilns and upcoming workshops</p></form></form>"""
    text = text_of(body)
    assert all(sentence in text for sentence in PROSE)
    assert "Search the site" not in text


def test_an_article_split_into_sibling_sections_keeps_every_section():
    sections = "".join(f'<div class="story-part">{paragraphs([s])}</div>' for s in PROSE)
    body = f'<div class="wrap"><div class="story">{sections}</div><div class="teasers"><p>Short teaser</p></div></div>'
    text = text_of(body)
    assert all(sentence in text for sentence in PROSE)


def test_text_laid_out_with_line_breaks_is_found_where_there_are_no_paragraphs():
    body = f"""<table><tr><td class="nav"><a href="/">Home</a><br><a href="/a">About us</a></td>
    <td>{"<br>".join(PROSE)}</td></tr></table>"""
    text = text_of(body)
    assert all(sentence in text for sentence in PROSE)
    assert "About us" not in text


def test_mostly_linked_paragraphs_and_boilerplate_lines_inside_the_article_are_dropped():
    body = f"""<article>{paragraphs(PROSE[:2])}
    <p>Read more: <a href="/x">The ten best kilns we visited across Japan and Korea this year</a></p>
    <p>The anagama at dawn, still smoking (Photo: Jane Doe / Pottery Weekly)</p>
    <p>Advertisement</p>
    {paragraphs(PROSE[2:])}</article>"""
    text = text_of(body)
    assert all(sentence in text for sentence in PROSE)
    for dropped in ("Read more", "The ten best kilns", "Jane Doe", "Advertisement"):
        assert dropped not in text, dropped


def test_a_long_paragraph_that_mentions_cookies_is_prose():
    sentence = (
        "Grandmother baked cookies in the cooling kiln, which held its heat for a day and a half, and the whole "
        "village came to collect a share of them before the pots were taken out and sorted."
    )
    text = text_of(paragraphs([*PROSE, sentence]))
    assert sentence in text


def test_scripts_inside_paragraphs_do_not_count_as_text():
    # A paragraph whose "text" is mostly JavaScript must not pull the root away from the prose.
    script = "<script>" + "var price = new Array(1,2,3); " * 80 + "</script>"
    body = f'<div class="product"><p>Price: 32,800 yen{script}</p></div><div class="detail">{paragraphs(PROSE)}</div>'
    text = text_of(body)
    assert all(sentence in text for sentence in PROSE)


def test_pages_with_nothing_to_find_give_plain_text_or_nothing_and_never_raise():
    assert extract_main_text("") == ""
    assert extract_main_text("<html><head><title>x</title></head></html>") == ""
    assert extract_main_text("just some text, no markup at all") == "just some text, no markup at all"
    assert extract_main_text("<p>One short line.</p>") == "One short line."


# --- hostile pages through the step: a reason, never a crash ---------------------------------------------------


def hostile_pages() -> dict[str, bytes]:
    return {
        "unclosed": b"<html><body><div><p>" + PROSE[0].encode() + b"<div><span><table><tr><td><p>" * 500,
        "garbage-tags": b"<<<>>><p <p>></ p><//div>" * 2000 + PROSE[1].encode(),
        # resiliparse itself (either engine) is quadratic in depth: 3,000 levels take ~0.3 s, 10,000 ~5 s; deeper
        # pages run into the time limit and are dropped as `extract_timeout`, like any hanging page.
        "deep-nesting": b"<div>" * 3_000 + PROSE[2].encode() + b"</div>" * 3_000,
        "many-paragraphs": b"<body>" + b"".join(b"<p>" + PROSE[i % 4].encode() + b"</p>" for i in range(5_000)),
        "many-links": b"<body><p>" + b'<a href="/x">link text</a> ' * 20_000 + b"</p>",
        "huge": b"<html><body><p>" + b"a" * (9 << 20) + b"</p>",
        "pdf": b"%PDF-1.7\n" + bytes(range(256)) * 100,
        "nul-ridden": b"<html>" + b"\x00\x01\x02" * 10_000,
        "broken-utf8": b"<p>caf\xe9 \xff\xfe " + PROSE[3].encode() + b"</p>",
        "comment-only": b"<!-- nothing here -->",
    }


def test_hostile_pages_get_a_reason_and_never_a_crash():
    pages = hostile_pages()
    docs = [Document(name, url=f"http://example.com/{name}", html=raw) for name, raw in pages.items()]
    step = Extractor(timeout=PER_PAGE_LIMIT)
    kept = {d.id: d.text for d in run_steps(docs, [step])}
    dropped = {d.id: d.metadata["dropped_by"] for d in docs if d.id not in kept}
    assert set(step.stats.dropped) <= REASONS, (step.stats.to_dict(), dropped)
    assert dropped["huge"] == "extract:extract_too_large"
    assert dropped["pdf"] == dropped["nul-ridden"] == "extract:extract_binary"
    assert PROSE[0] in kept["unclosed"] and PROSE[2] in kept["deep-nesting"] and PROSE[3] in kept["broken-utf8"]
    assert kept["many-paragraphs"].count(PROSE[0]) == 1250


# --- every bundled page within the per-page time limit -----------------------------------------------------------


def test_every_bundled_warc_page_extracts_within_the_time_limit():
    docs = []
    for path in sorted((QUICKSTART / "warc").glob("*.warc.gz")):
        for rec in iter_records(path, IngestStats(), content_types=["text/html"]):
            meta = {"content_type": rec.content_type}
            docs.append(Document(f"{path.name}#{rec.offset}", url=rec.url, html=rec.body, metadata=meta))
    assert len(docs) >= 50
    raw = [d.html for d in docs]
    step = Extractor(timeout=PER_PAGE_LIMIT)
    kept = list(run_steps(docs, [step]))
    assert set(step.stats.dropped) <= {"extract_empty"}, step.stats.to_dict()
    assert len(kept) == len(docs)  # the previous default kept every one of them too
    # It drops chrome, not the pages' prose: most of the previous default's text is still there.
    previous = sum(len(tidy(extract_resiliparse(decode_html(html)[0]))) for html in raw if html is not None)
    assert sum(len(d.text) for d in kept) >= 0.7 * previous


@pytest.mark.slow
def test_every_page_of_the_bundled_python_docs_site_extracts_within_the_time_limit():
    with tarfile.open(QUICKSTART / "python-3.11.2-docs-html.tar.xz") as tf:
        docs = [
            Document(m.name, url=f"https://docs.python.org/3.11/{m.name[5:]}", html=tf.extractfile(m).read())  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.name.endswith(".html")
        ]
    assert len(docs) >= 500
    step = Extractor(timeout=PER_PAGE_LIMIT)
    start = time.perf_counter()
    kept = {d.id: d.text for d in run_steps(docs, [step])}
    assert time.perf_counter() - start < PER_PAGE_LIMIT * len(docs)  # (each page is also limited on its own)
    assert set(step.stats.dropped) <= {"extract_empty"}, step.stats.to_dict()
    assert len(kept) >= 0.98 * len(docs)
    json_text = kept["html/library/json.html"]
    assert json_text.startswith("json — JSON encoder and decoder\n")
    assert "Disable escaping of non-ascii characters" in json_text  # the last section survives too
    assert "Previous topic" not in json_text and "Quick search" not in json_text


# --- quality on the extraction dev set ---------------------------------------------------------------------------

# Measured 0.972 (docs/benchmarks.md); the threshold sits a little under it, so a regression shows and a change of
# a page or two does not. The previous default scores 0.938, trafilatura 0.965.
MIN_DEV_F1 = 0.96


@pytest.mark.shared
def test_dev_set_f1_and_paragraph_breaks(shared_data: Path):
    pages = load_dev_set(shared_data / "web" / "extraction-dev")
    assert len(pages) == 47
    f1s, kept, found = [], 0, 0
    for p in pages:
        text = tidy(extract_main_text(decode_html(p.html)[0], p.url))
        f1s.append(bag_of_words_prf(text, p.reference)[2])
        k, f = paragraph_breaks(text, p.reference)
        kept, found = kept + k, found + f
    mean_f1 = sum(f1s) / len(f1s)
    assert mean_f1 >= MIN_DEV_F1, mean_f1
    assert min(f1s) >= 0.75  # no page lost wholesale
    assert found >= 700 and kept >= 0.99 * found  # paragraphs stay apart
