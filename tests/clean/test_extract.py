"""Extractor: main text out of HTML on resiliparse and trafilatura, charset decoding, and every way a page can
go wrong (empty, huge, binary, mislabelled, an extractor that raises, hangs, loops in C or crashes) ending as
a dropped document with a reason, never as a crash or a stuck run."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import tarfile
import threading
import time
from pathlib import Path

import pytest

from kiln.acquire.warc import IngestStats, iter_records
from kiln.clean.extract import (
    Extractor,
    decode_html,
    extract_main_text,
    extract_resiliparse,
    looks_binary,
    meta_charset,
    tidy,
)
from kiln.clean.pipeline import Document, run_steps

ENGINES = ["main_text", "resiliparse", "trafilatura"]

ARTICLE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Kilns - Pottery Weekly</title></head>
<body>
<header><nav class="menu"><ul>
  <li><a href="/">Home</a></li><li><a href="/shop">Shop our catalogue</a></li><li><a href="/login">Sign in</a></li>
</ul></nav></header>
<div id="sidebar"><h3>Popular posts</h3><ul><li><a href="/a">Ten glazes you must try</a></li>
  <li><a href="/b">Our summer sale ends soon</a></li></ul></div>
<main><article>
  <h1>How a wood-fired kiln reaches stoneware temperature</h1>
  <p>A wood-fired kiln climbs to stoneware temperature slowly. The firing team feeds split logs into the
  firebox every few minutes, and each charge sends a long flame through the chamber toward the chimney.</p>
  <h2>Reduction and the colour of the glaze</h2>
  <p>When the fire starves for air, carbon monoxide pulls oxygen out of the clay body and the glazes, which
  turns copper red and iron celadon green. Potters read the flame at the spy holes to judge the atmosphere.</p>
  <p>After the last stoking, the kiln is sealed and left to cool for two days before the door is unbricked
  and the pots are finally seen.</p>
</article></main>
<footer><p>Copyright 2024 Pottery Weekly Ltd. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>
"""
NAV = ["Shop our catalogue", "Sign in", "Our summer sale ends soon", "All rights reserved", "Privacy policy"]


# --- fake extractors, module-level so any start method can use them -------------------------------------------


def sleepy(html: str, url: str) -> str:
    """Sleeps on pages marked SLEEP, else returns the page: a Python-level hang."""
    if "SLEEP" in html:
        time.sleep(60)
    return html


def busy_in_c(html: str, url: str) -> str:
    """A hang inside C code (OpenSSL's PBKDF2 loop, minutes long), which no Python signal handler can stop."""
    if "CLOOP" in html:
        hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 10**9)
    return html


def spinning(html: str, url: str) -> str:
    """A Python busy loop on pages marked LOOP."""
    while "LOOP" in html:
        pass
    return html


def crashing(html: str, url: str) -> str:
    """The worker dies (as on a segfault in C code) on pages marked CRASH."""
    if "CRASH" in html:
        os.kill(os.getpid(), signal.SIGKILL)
    return html


def raising(html: str, url: str) -> str:
    if "RAISE" in html:
        raise RuntimeError("the extractor broke")
    return html


def returns_none(html: str, url: str) -> str:
    return None  # type: ignore[return-value]


def returns_blank(html: str, url: str) -> str:
    return " \n\n \t "


def docs_of(*pages: str) -> list[Document]:
    return [Document(str(i), url=f"http://example.com/{i}", html=p.encode()) for i, p in enumerate(pages)]


def workers_alive() -> list[str]:
    return [p.name for p in mp.active_children() if p.name == "kiln-extract"]


# --- main text ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_main_text_keeps_headings_and_paragraphs_and_drops_navigation(engine: str):
    step = Extractor(engine, timeout=10)
    (doc,) = run_steps(docs_of(ARTICLE), [step])
    assert doc.html is None
    text = doc.text
    for kept in ("A wood-fired kiln climbs", "turns copper red", "the pots are finally seen"):
        assert kept in text
    assert "Reduction and the colour of the glaze" in text  # an <h2> survives
    for boilerplate in NAV:
        assert boilerplate not in text
    # Paragraphs stay apart: the <h2> is a line of its own, and no paragraph runs into the next.
    lines = text.splitlines()
    assert "Reduction and the colour of the glaze" in [line.strip() for line in lines]
    assert not any("chimney." in line and "When the fire" in line for line in lines)
    assert doc.metadata["encoding"] == "utf-8"
    assert step.stats.kept == 1 and not step.stats.dropped


@pytest.mark.parametrize("extract", [extract_main_text, extract_resiliparse])
def test_resiliparse_and_main_text_keep_the_h1_title(extract):
    text = tidy(extract(ARTICLE))
    assert text.splitlines()[0] == "How a wood-fired kiln reaches stoneware temperature"


def test_tidy_collapses_blank_runs_but_keeps_indentation():
    assert tidy("\n\n  a  \r\n\n\n\n    b\t\n\n") == "  a\n\n    b"


def test_unknown_engine_and_bad_timeout_are_refused():
    with pytest.raises(ValueError, match="unknown extraction engine"):
        Extractor("readability")
    with pytest.raises(ValueError):
        Extractor(timeout=0)


# --- decoding ----------------------------------------------------------------------------------------------

RUSSIAN = (
    "<html><body><h1>Пожарная безопасность</h1><p>"
    + "Мы проектируем и обслуживаем системы. " * 20
    + "</p></body></html>"
)


def test_decode_uses_the_http_charset_then_the_meta_charset():
    data = RUSSIAN.encode("cp1251")
    assert decode_html(data, "windows-1251") == (RUSSIAN, "cp1251")
    with_meta = RUSSIAN.replace(
        "<html>", '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"></head>'
    )
    assert meta_charset(with_meta.encode("cp1251")) == "windows-1251"
    assert decode_html(with_meta.encode("cp1251")) == (with_meta, "cp1251")
    # WHATWG labels: latin-1 is windows-1252 on the web (0x80 is the euro sign there, a control in latin-1)
    assert decode_html(b"<p>price \x80 5</p>", "ISO-8859-1")[0] == "<p>price € 5</p>"


def test_decode_without_any_declaration_detects():
    text, codec = decode_html(RUSSIAN.encode("cp1251"))
    assert text == RUSSIAN and codec == "cp1251"
    jp = "<html><body><p>" + "日本語のテキストです。吉田カバンの商品を紹介します。" * 10 + "</p></body></html>"
    text, codec = decode_html(jp.encode("euc-jp"))
    assert text == jp


def test_wrongly_declared_charsets_are_survived():
    # Declared latin-1, really UTF-8 (the most common mislabelling): read as UTF-8, no mojibake.
    assert decode_html("<p>café crème</p>".encode(), "iso-8859-1") == ("<p>café crème</p>", "utf-8")
    # Declared UTF-8, really cp1251: UTF-8 fails strictly, detection takes over.
    text, _ = decode_html(RUSSIAN.encode("cp1251"), "utf-8")
    assert text == RUSSIAN
    # A label nobody knows, and a declared UTF-16 that is not.
    assert decode_html(b"<p>plain</p>", "x-no-such-charset")[0] == "<p>plain</p>"
    assert decode_html(b"<p>ascii, says utf-16</p>", "utf-16")[0] == "<p>ascii, says utf-16</p>"
    page = "<p>real UTF-16 without a byte order mark</p>"
    assert decode_html(page.encode("utf-16-le"), "utf-16") == (page, "utf-16-le")
    assert (
        Extractor(timeout=None).extract(
            doc := Document("u16", html=page.encode("utf-16-le"), metadata={"charset": "UTF-16LE"})
        )
        is None
    )
    assert doc.text == "real UTF-16 without a byte order mark"
    # Bytes that are nothing at all still give a string (with replacement characters), not an exception.
    text, _ = decode_html(bytes(range(128, 256)) * 4, "utf-8")
    assert isinstance(text, str) and text


def test_a_byte_order_mark_wins_over_a_declaration():
    page = "<p>Grüße</p>"
    assert decode_html(page.encode("utf-16"), "iso-8859-1") == (page, "utf-16")
    assert decode_html(b"\xef\xbb\xbf" + page.encode(), "windows-1251") == (page, "utf-8-sig")


@pytest.mark.parametrize("engine", ENGINES)
def test_charset_from_metadata_reaches_the_text(engine: str):
    doc = Document("r", html=RUSSIAN.encode("cp1251"), metadata={"content_type": "text/html; charset=windows-1251"})
    step = Extractor(engine, timeout=None)
    assert step.extract(doc) is None
    assert "Пожарная безопасность" in doc.text or "Мы проектируем" in doc.text
    assert "\ufffd" not in doc.text
    doc2 = Document("r2", html="<p>Déjà vu, encore une fois. ".encode("latin-1") * 30, metadata={"charset": "latin1"})
    assert step.extract(doc2) is None and "Déjà vu" in doc2.text


# --- pages that must be dropped, not crash -----------------------------------------------------------------


def test_empty_huge_and_binary_pages_are_dropped_with_reasons():
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    noise = bytes(range(256)) * 8  # NULs and control bytes, no signature
    docs = [
        Document("empty", html=b""),
        Document("blank", html=b"  \n\t "),
        Document("huge", html=b"<p>" + b"x" * 5000 + b"</p>"),
        Document("png", html=png),
        Document("pdf", html=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"),
        Document("noise", html=noise),
        Document("markup-only", html=b"<html><head><script>var a = 1;</script></head><body></body></html>"),
        Document("text-input", text="already text, no HTML"),
        Document("nothing"),
        Document("ok", html=ARTICLE.encode()),
    ]
    step = Extractor(timeout=None, max_html_bytes=4096)
    kept = [d.id for d in run_steps(docs, [step])]
    assert kept == ["text-input", "ok"]
    assert dict(step.stats.dropped) == {
        "extract_empty": 4,  # empty, blank, markup-only, nothing
        "extract_too_large": 1,
        "extract_binary": 3,
    }
    assert docs[7].text == "already text, no HTML"


def test_looks_binary_lets_real_text_through():
    assert not looks_binary(ARTICLE.encode())
    assert not looks_binary("<p>Grüße</p>".encode("utf-16"))  # UTF-16 with a BOM is text
    assert not looks_binary(b"<p>one stray \x00 NUL in a long page</p>" + b"<p>text</p>" * 500)
    assert looks_binary(b"\x1f\x8b\x08\x00gzip")
    assert looks_binary(b"<p>\x00\x00\x00\x00</p>")


@pytest.mark.parametrize("timeout", [None, 10.0])
def test_an_extractor_that_raises_or_returns_junk_drops_the_page_and_the_run_goes_on(timeout: float | None):
    step = Extractor(raising, timeout=timeout)
    docs = docs_of("<p>first</p>", "<p>RAISE</p>", "<p>third</p>")
    kept = [d.id for d in run_steps(docs, [step])]
    assert kept == ["0", "2"]
    assert dict(step.stats.dropped) == {"extract_error": 1}
    assert "RuntimeError: the extractor broke" in docs[1].metadata["extract_error"]
    assert docs[1].html is not None  # a dropped page keeps its HTML for inspection
    none_step = Extractor(returns_none, timeout=timeout)
    assert list(run_steps(docs_of("<p>x</p>"), [none_step])) == []
    assert dict(none_step.stats.dropped) == {"extract_error": 1}
    blank_step = Extractor(returns_blank, timeout=timeout)
    assert list(run_steps(docs_of("<p>x</p>"), [blank_step])) == []
    assert dict(blank_step.stats.dropped) == {"extract_empty": 1}


# --- the time limit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fake", [sleepy, spinning, busy_in_c], ids=["sleep", "python-loop", "c-loop"])
def test_a_hanging_page_is_dropped_as_timeout_and_the_run_goes_on(fake):
    marker = {"sleepy": "SLEEP", "spinning": "LOOP", "busy_in_c": "CLOOP"}[fake.__name__]
    step = Extractor(fake, timeout=0.5)
    docs = docs_of("<p>one</p>", f"<p>{marker}</p>", "<p>three</p>", f"<p>{marker} again</p>", "<p>five</p>")
    start = time.monotonic()
    kept = list(run_steps(docs, [step]))
    elapsed = time.monotonic() - start
    assert [d.id for d in kept] == ["0", "2", "4"]
    assert [d.text for d in kept] == ["<p>one</p>", "<p>three</p>", "<p>five</p>"]
    assert dict(step.stats.dropped) == {"extract_timeout": 2}
    assert docs[1].metadata["dropped_by"] == "extract:extract_timeout"
    assert elapsed < 15, elapsed  # two 0.5 s limits plus restarts, not a 60 s sleep or a minutes-long loop
    assert step.worker is not None and step.worker.restarts == 2
    assert workers_alive() == []  # the stream ended: no worker left behind


def test_the_time_limit_also_works_outside_the_main_thread():
    """SIGALRM could not do this: signals are only delivered to the main thread."""
    result: dict[str, object] = {}

    def run() -> None:
        step = Extractor(sleepy, timeout=0.5)
        result["kept"] = [d.id for d in run_steps(docs_of("<p>SLEEP</p>", "<p>fine</p>"), [step])]
        result["dropped"] = dict(step.stats.dropped)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert result == {"kept": ["1"], "dropped": {"extract_timeout": 1}}


def test_a_crashing_worker_drops_the_page_and_is_restarted():
    step = Extractor(crashing, timeout=5)
    docs = docs_of("<p>a</p>", "<p>CRASH</p>", "<p>c</p>")
    kept = [d.id for d in run_steps(docs, [step])]
    assert kept == ["0", "2"]
    assert dict(step.stats.dropped) == {"extract_crash": 1}
    assert "died" in docs[1].metadata["extract_error"]


def test_stopping_early_stops_the_worker():
    step = Extractor(timeout=5)
    stream = run_steps(docs_of(ARTICLE, ARTICLE, ARTICLE), [step])
    first = next(stream)
    assert "wood-fired" in first.text
    assert step.worker is not None and step.worker.pid is not None
    assert workers_alive() == ["kiln-extract"]
    stream.close()
    assert step.worker.pid is None and workers_alive() == []


# --- batches and worker reuse ---------------------------------------------------------------------------------


def test_batches_keep_the_order_the_reasons_and_each_page_s_own_time_limit():
    """Pages go to the worker a batch at a time; a batch mixing pages dropped before extraction, pass-through
    text, a page that hangs, one that raises and one that kills the worker ends exactly as one page at a
    time would: same documents kept in the same order, same reasons, same samples."""

    def mixed() -> list[Document]:
        docs = docs_of("<p>one</p>", "<p>SLEEP</p>", "<p>three</p>", "<p>RAISE</p>", "<p>CRASH</p>", "<p>six</p>")
        docs.insert(2, Document("empty", html=b" "))
        docs.insert(4, Document("text-input", text="already text"))
        return docs

    def run(batch_size: int) -> tuple[list[str], dict[str, int], list[tuple[str, str]], int]:
        step = Extractor(both_failing, timeout=0.5, batch_size=batch_size)
        kept = [d.id for d in run_steps(mixed(), [step])]
        assert step.worker is not None
        return kept, dict(step.stats.dropped), [(d.id, d.reason) for d in step.samples], step.worker.restarts

    one_at_a_time = run(1)
    assert one_at_a_time == (
        ["0", "2", "text-input", "5"],
        {"extract_timeout": 1, "extract_empty": 1, "extract_error": 1, "extract_crash": 1},
        [("1", "extract_timeout"), ("empty", "extract_empty"), ("3", "extract_error"), ("4", "extract_crash")],
        2,  # restarted after the timeout and after the crash
    )
    for batch_size in (2, 3, 16):
        assert run(batch_size) == one_at_a_time, batch_size
    assert workers_alive() == []


def both_failing(html: str, url: str) -> str:
    return crashing(raising(sleepy(html, url), url), url)


def test_reuse_workers_hands_one_worker_from_stream_to_stream_and_stops_it_at_the_end():
    from kiln.clean.extract import reuse_workers

    pids = []
    with reuse_workers():
        for _ in range(3):
            step = Extractor(timeout=5)
            assert next(d.text for d in run_steps(docs_of(ARTICLE), [step])).startswith("How a wood-fired")
            assert step.worker is not None and step.worker.pid is None  # the step let go of it ...
            assert workers_alive() == ["kiln-extract"]  # ... but it is parked, alive
        pids = [p.pid for p in mp.active_children() if p.name == "kiln-extract"]
        other = Extractor(sleepy, timeout=5)  # another function: its own worker
        list(run_steps(docs_of("<p>x</p>"), [other]))
        assert len(workers_alive()) == 2
        hung = Extractor(timeout=0.5)  # a worker killed for a timeout is not parked
        hung.fn = hung.worker.fn = sleepy  # type: ignore[union-attr]
        assert list(run_steps(docs_of("<p>SLEEP</p>"), [hung])) == []  # it took over `other`'s worker ...
        assert len(workers_alive()) == 1  # ... which was killed, not parked again
    assert len(pids) == 1
    assert workers_alive() == []
    step = Extractor(timeout=5)  # outside the block a stream's end stops its worker again
    list(run_steps(docs_of(ARTICLE), [step]))
    assert workers_alive() == []


# --- real pages ----------------------------------------------------------------------------------------------


def warc_pages(shared_data: Path) -> list[Document]:
    docs = []
    for path in sorted((shared_data / "web" / "warc").glob("*.warc.gz")):
        for rec in iter_records(path, IngestStats(), content_types=["text/html"]):
            docs.append(
                Document(
                    f"{path.name}#{rec.offset}", url=rec.url, html=rec.body, metadata={"content_type": rec.content_type}
                )
            )
    return docs


@pytest.mark.shared
@pytest.mark.parametrize("engine", ENGINES)
def test_real_warc_pages_extract_without_crashing(shared_data: Path, engine: str):
    docs = warc_pages(shared_data)
    assert len(docs) >= 80
    step = Extractor(engine, timeout=30 if engine != "trafilatura" else None)
    kept = list(run_steps(docs, [step]))
    assert step.stats.seen == len(docs)
    assert len(kept) >= 0.9 * len(docs), step.stats.to_dict()
    assert set(step.stats.dropped) <= {"extract_empty"}  # no errors, crashes or timeouts on real pages
    for doc in kept:
        assert doc.html is None and doc.text.strip() == doc.text and doc.text
    by_url = {d.url: d for d in kept}

    wiki = by_url["https://an.wikipedia.org/wiki/Escopete"].text
    assert "Municipio de Castiella-La Mancha" in wiki and "Hilario López" in wiki
    for nav in ("Portalada", "Actualidat", "Donativos", "Ferramientas", "Creative Commons"):
        assert nav not in wiki, nav

    ru = by_url["http://01spb.ru/company/"]  # declared windows-1251 in the HTTP header
    assert ru.metadata["encoding"] == "cp1251"
    assert "пожарной безопасности" in ru.text and "\ufffd" not in ru.text

    jp = [d for d in kept if "uraharajuku.st" in d.url]  # EUC-JP, from the clueweb09 quirk file
    assert len(jp) >= 20
    assert all(d.metadata["encoding"] == "euc_jp" and "\ufffd" not in d.text for d in jp)
    assert all("HEADPORTER" in d.text or "ヘッドポーター" in d.text for d in jp)


DOC_PAGES = ["library/json.html", "tutorial/introduction.html", "library/functions.html"]
DOCS_NAV = [
    "Previous topic",
    "Next topic",
    "This Page",
    "Report a Bug",
    "Show Source",
    "Quick search",
    "Python Software Foundation",
    "Found a bug",
]


@pytest.mark.shared
@pytest.mark.parametrize("engine", ENGINES)
def test_python_docs_pages_keep_the_body_and_drop_the_sphinx_chrome(shared_data: Path, engine: str):
    with tarfile.open(shared_data / "web" / "site" / "python-3.11.2-docs-html.tar.xz") as tf:
        pages = {name: tf.extractfile(f"html/{name}").read() for name in DOC_PAGES}  # type: ignore[union-attr]
    for raw in pages.values():
        assert all(nav.encode() in raw for nav in DOCS_NAV[:4])  # the chrome is in the page...
    docs = [Document(name, url=f"https://docs.python.org/3.11/{name}", html=raw) for name, raw in pages.items()]
    kept = {d.id: d.text for d in run_steps(docs, [Extractor(engine, timeout=None)])}
    assert set(kept) == set(DOC_PAGES)
    for name, text in kept.items():
        for nav in DOCS_NAV:
            assert nav not in text, (name, nav)  # ...and not in the text
    json_text = kept["library/json.html"]
    assert "JSON (JavaScript Object Notation), specified by RFC 7159" in json_text
    assert "Disable escaping of non-ascii characters" in json_text  # the last section survives too
    assert "Return the absolute value of a number" in kept["library/functions.html"]
    if engine != "trafilatura":
        assert json_text.startswith("json — JSON encoder and decoder\n")
