"""HTML -> main text: the extraction step of `kiln clean`, on main_text (default), resiliparse or trafilatura.

`Extractor(engine=...)` decodes `doc.html`, extracts the main text (paragraphs, headings and lists kept,
navigation, menus, footers, comments and other boilerplate dropped), puts it in `doc.text` and sets
`doc.html = None`.

The engines, measured with `benchmarks/extract.py` (figures in docs/benchmarks.md): bag-of-words F1 against the
human `articleBody` on the 47 pages of the extraction dev set, and speed against plain resiliparse in the same
run on the 84 HTML pages of the real WARC samples:

- `main_text` (default, kiln.clean.main_text): resiliparse's DOM, a rule-based choice of the content block
  (paragraph text per element, link text discounted, Readability's boilerplate vocabulary on class and id),
  resiliparse's text. F1 0.972 at ~0.5x resiliparse's pages/s on the WARC pages (0.6x on the dev set).
- `resiliparse` (the previous default): resiliparse's main-content heuristics on the whole page. F1 0.938
  (recall 0.99, but headlines, teasers, banners and captions kept: precision 0.90); drops every `<ul>`.
- `trafilatura`: FineWeb's settings (`favor_precision`). F1 0.957 at ~0.05x resiliparse's pages/s: too slow
  for small machines (one core of resiliparse keeps up with ~15 of trafilatura), but one argument away
  (`Extractor(engine="trafilatura")`) for exact FineWeb parity.

main_text and resiliparse keep the page's `<h1>` (`json — JSON encoder and decoder` on a docs page); trafilatura's
text output moves the title into metadata. All three drop the Sphinx navigation of the docs pages.

Decoding (`decode_html`): a byte order mark wins; then the declared charsets, HTTP first
(`doc.metadata["charset"]`, else the charset of `doc.metadata["content_type"]`), then `<meta charset>`,
each mapped with the WHATWG label rules (`iso-8859-1` means windows-1252 on the web) and tried strictly;
a page that is valid UTF-8 with non-ASCII bytes is read as UTF-8 whatever it declares (the most common
mislabelling, and valid multi-byte UTF-8 is practically never an accident); when nothing declared works,
uchardet (resiliparse) guesses and the decode replaces what still does not fit. It never raises.

Dropped documents and their reasons: `extract_empty` (no HTML, or no text came out), `extract_too_large`
(over `max_html_bytes`: such pages are almost never prose and cost the most time), `extract_binary` (a
PDF, image, archive or NUL-ridden body sent as HTML), `extract_error` (the extractor raised or returned
something other than text), `extract_timeout` (it ran past `timeout` seconds), `extract_crash` (the worker
process died, e.g. a segfault in C code). A document that has no HTML but has text (WET, JSONL input)
passes through unchanged.

The time limit runs the extractor in a worker process and kills it when a page takes too long, as
datatrove does. SIGALRM was rejected: its handler runs only between Python bytecodes, so it cannot stop a
loop inside C (resiliparse is C++, lxml is C), which is exactly where a pathological page hangs; it also
works only in the main thread of the main interpreter. A process can always be killed and also survives a
segfault. The worker is forked (no re-import, and the engine needs no pickling) where fork exists, else
spawned; it is restarted after a kill, warmed up before the first page so import time never counts against a
page, and stopped when the step's stream ends (inside `reuse_workers()`, as `kiln clean` runs its shards, it
is handed on to the next stream instead: starting one, with the copy-on-write faults a fork brings, costs
~20 ms). Pages go to it `batch_size` (16) at a time and it answers each page as soon as it is done: handing
over one page at a time cost ~0.8 ms a page in the pipeline, where the parent runs the filters between pages
and the idle worker's CPU sleeps and its caches go cold. Each page keeps its own limit (counted from the
answer before it). All told the step runs at 850 docs/s against 1340 for resiliparse alone on the WARC pages
(one stream of 84 pages: decoding, start and stop included); invisible next to trafilatura.
`timeout=None` runs the extractor in-process with no limit (debugging, benchmarks).
"""

from __future__ import annotations

import codecs
import contextlib
import multiprocessing as mp
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from kiln.clean.main_text import extract_main_text
from kiln.clean.pipeline import Document, Step

ExtractFn = Callable[[str, str], str]
ENGINES = ("main_text", "resiliparse", "trafilatura")
DEFAULT_ENGINE = "main_text"

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_CT_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\x7fELF", b"RIFF")
_BLANK_RUNS = re.compile(r"\n{3,}")
MAX_TIMEOUT = 3600.0  # seconds a page may take: past this a time limit means nothing
MAX_BATCH = 4096  # pages a batch: the step reads this many documents ahead
MAX_HTML_BYTES = 1 << 30  # a page larger than a GiB is never prose (and WARC records are held in memory)
BATCH_CHARS = 4 << 20  # HTML characters sent to the worker at once (a batch holds at least one page)
_WARMUP_HTML = "<html><head><title>t</title></head><body><h1>Warm up</h1><p>A first paragraph.</p></body></html>"


# --- engines: module-level functions, so a spawned worker can unpickle them by name -------------------------


def extract_resiliparse(html: str, url: str = "") -> str:
    """resiliparse's main-content heuristics, block formatting kept (paragraphs, headings, list bullets);
    links, alt texts, form fields and <noscript> dropped: they are markup, not prose."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    return extract_plain_text(
        tree,
        preserve_formatting=True,
        main_content=True,
        list_bullets=True,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
        comments=False,
    )


def extract_trafilatura(html: str, url: str = "") -> str:
    """trafilatura as FineWeb runs it (`favor_precision`, no comments); tables kept, no cross-document
    deduplication (it would make a page's text depend on the pages before it)."""
    import trafilatura

    text = trafilatura.extract(
        html,
        url=url or None,
        favor_precision=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
        output_format="txt",
    )
    return text or ""


def engine_function(engine: str | ExtractFn) -> ExtractFn:
    """The extraction function for an engine name (a callable `(html, url) -> text` is taken as is)."""
    if callable(engine):
        return engine
    if engine in ("main_text", "resiliparse"):
        import resiliparse.extract.html2text  # noqa: F401  (import once here, not in every worker)

        return extract_main_text if engine == "main_text" else extract_resiliparse
    if engine == "trafilatura":
        import logging

        import trafilatura  # noqa: F401

        logging.getLogger("trafilatura").setLevel(logging.ERROR)  # it warns per page about empty output
        return extract_trafilatura
    raise ValueError(f"unknown extraction engine {engine!r}; choose from {', '.join(ENGINES)}")


# --- decoding ----------------------------------------------------------------------------------------------


def charset_label(label: str | None) -> str | None:
    """A declared charset as a Python codec name, by the WHATWG label rules; None if unknown or missing."""
    if not label:
        return None
    from resiliparse.parse.encoding import map_encoding_to_html5

    name = map_encoding_to_html5(label.strip().strip("\"'"), fallback_utf8=False)
    if name is None:
        return None
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name


def declared_charset(metadata: dict[str, Any]) -> str | None:
    """The HTTP charset: `metadata["charset"]`, else the charset parameter of `metadata["content_type"]`."""
    label = metadata.get("charset")
    if not label and isinstance(metadata.get("content_type"), str):
        m = _CT_CHARSET.search(metadata["content_type"])
        label = m.group(1) if m else None
    return label if isinstance(label, str) else None


def meta_charset(data: bytes) -> str | None:
    """The charset of a `<meta charset>` or `<meta http-equiv content="...; charset=">` near the top."""
    m = _META_CHARSET.search(data[:4096])
    return m.group(1).decode("ascii") if m else None


def decode_html(data: bytes | str, http_charset: str | None = None) -> tuple[str, str]:
    """(text, codec used). Never raises; see the module docstring for the order of evidence."""
    if isinstance(data, str):
        return data, "str"
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), codec
    declared = [c for c in (charset_label(http_charset), charset_label(meta_charset(data))) if c]
    if not data.isascii():
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    for codec in dict.fromkeys(declared):  # in order, without repeats
        if codec.startswith(("utf-16", "utf-32")) and b"\x00" not in data[:1024]:
            continue  # WHATWG: a page that could declare UTF-16 in ASCII is not UTF-16
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    guess = detect_encoding(data)
    try:
        return bytes_to_str(data, guess, errors="replace"), guess
    except (UnicodeError, LookupError):
        return data.decode("utf-8", errors="replace"), "utf-8"


def looks_binary(data: bytes | str, declared: str | None = None) -> bool:
    """A known binary signature at the start, or NUL bytes in the first 8 KiB (HTML has none, beyond a stray
    one; UTF-16/32 with a BOM, or declared so, is text and is let through)."""
    if isinstance(data, str):
        return "\x00" in data[:8192]
    head = data[:8192].lstrip()
    if head.startswith(_MAGIC):
        return True
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return False
    if declared and declared.lower().replace("-", "").startswith(("utf16", "utf32", "ucs2")):
        return False
    return head.count(b"\x00") * 1000 > len(head)  # > 0.1%: random bytes have 0.4%, a stray NUL far less


def tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank lines around the text.
    Leading indentation stays: it is the structure of code blocks and nested lists."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


# --- the worker process --------------------------------------------------------------------------------------

Reply = tuple[str, str]  # ("ok", text) | ("error", message) | ("timeout", "") | ("crash", message)


def _serve(conn: Connection, fn: ExtractFn, parent: int | None = None) -> None:
    """Worker loop: warm up, say ready, then take batches of (html, url) and answer each page, in order and as
    soon as it is done, with ("ok", text) or ("error", message). Dies with `parent` (`kiln.utils.lifeline`):
    a worker stuck in C code on a page would otherwise outlive a killed run."""
    if parent is not None:
        from kiln.utils.lifeline import die_with_parent

        die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
    with contextlib.suppress(Exception):
        fn(_WARMUP_HTML, "")
    conn.send(("ready", ""))
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for html, url in batch:
            try:
                text = fn(html, url)
                bad = f"extractor returned {type(text).__name__}"
                reply = ("ok", text) if isinstance(text, str) else ("error", bad)
            except Exception as e:  # any failure of the extractor is a dropped page, not a dead worker
                reply = ("error", f"{type(e).__name__}: {str(e)[:200]}")
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                return


class ExtractWorker:
    """One worker process running an extraction function, killed and restarted when a page times out.

    Pages go to it in batches (`run_batch`): one message out per batch instead of one per page, so the two
    processes hand over once per batch. Handing over per page cost ~0.8 ms a page in the pipeline, about as
    much as extracting it: the idle worker's CPU sleeps and its caches go cold while the parent runs the filters.
    Every page keeps its own time limit: the worker answers each page as soon as it is done, and the parent
    waits at most `timeout` for each answer after the one before it."""

    def __init__(self, fn: ExtractFn, start_timeout: float = 60.0) -> None:
        self.fn = fn
        self.start_timeout = start_timeout
        self.restarts = 0  # workers started after the first (a timeout or crash each)
        self._proc: Any = None
        self._conn: Connection | None = None
        self._started = 0

    def _start(self) -> Connection:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.fn, os.getpid()), daemon=True, name="kiln-extract")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self._started += 1
        self.restarts = self._started - 1
        if not parent.poll(self.start_timeout):
            self.stop()
            raise RuntimeError(f"extraction worker did not start within {self.start_timeout}s")
        try:
            parent.recv()
        except EOFError as e:
            self.stop()
            raise RuntimeError("extraction worker died while starting") from e
        return parent

    def run(self, html: str, url: str, timeout: float) -> Reply:
        """("ok", text) | ("error", message) | ("timeout", "") | ("crash", message)."""
        return self.run_batch([(html, url)], timeout)[0]

    def run_batch(self, pages: list[tuple[str, str]], timeout: float) -> list[Reply]:
        """One reply per (html, url), in order, as `run` gives it. A page that runs past `timeout` (counted from
        the reply before it) is a timeout, a page the worker dies on a crash; either way the worker is
        killed, and the pages after it go to a fresh one."""
        replies: list[Reply] = []
        while len(replies) < len(pages):
            todo = pages[len(replies) :]
            conn = self._conn
            if conn is None or self._proc is None or not self._proc.is_alive():
                self.stop()
                conn = self._start()
            try:
                conn.send(todo)
            except (BrokenPipeError, OSError) as e:
                self.stop()
                replies.append(("crash", f"worker gone before the page was sent ({e})"))
                continue
            for _ in todo:
                if not conn.poll(timeout):
                    self.stop()
                    replies.append(("timeout", ""))
                    break
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    code = self._proc.exitcode if self._proc is not None else None
                    self.stop()
                    replies.append(("crash", f"worker died (exit code {code})"))
                    break
                replies.append((status, payload))
        return replies

    def stop(self) -> None:
        """Kill the worker (SIGKILL: a hung extractor ignores anything gentler) and reap it."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            with contextlib.suppress(ValueError):
                proc.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()


# Workers parked between streams while `reuse_workers()` is on: extraction function -> idle workers.
_parked: dict[ExtractFn, list[ExtractWorker]] | None = None
_parked_lock = threading.Lock()


@contextlib.contextmanager
def reuse_workers() -> Iterator[None]:
    """While this block runs, an `Extractor` whose stream ends parks its worker instead of stopping it, and the
    next `Extractor` with the same extraction function takes it over; every parked worker is stopped when the
    block ends. `kiln clean` runs one Extractor per input shard, and starting a worker (fork, warm-up, the
    copy-on-write faults that follow a fork) costs ~20 ms: more than extracting a small shard."""
    global _parked
    with _parked_lock:
        outer, _parked = _parked, (_parked if _parked is not None else {})
    try:
        yield
    finally:
        if outer is None:
            with _parked_lock:
                parked, _parked = _parked or {}, None
            for workers in parked.values():
                for worker in workers:
                    worker.stop()


def _park(worker: ExtractWorker) -> bool:
    """Keep a live worker for the next Extractor if `reuse_workers()` is on; False if it must be stopped."""
    with _parked_lock:
        if _parked is None or not worker.alive:
            return False
        _parked.setdefault(worker.fn, []).append(worker)
        return True


def _unpark(fn: ExtractFn) -> ExtractWorker | None:
    with _parked_lock:
        workers = (_parked or {}).get(fn)
        return workers.pop() if workers else None


# --- the step ------------------------------------------------------------------------------------------------


class Extractor(Step):
    """HTML -> `doc.text` with main_text (default), resiliparse or trafilatura; see the module docstring.

    `engine` may also be a function `(html, url) -> text`; where the worker has to be spawned (no fork),
    it must be a module-level function, since it is pickled by name. With a time limit, pages go to the
    worker `batch_size` at a time (and at most `BATCH_CHARS` characters of HTML, but at least one page):
    the step reads that many documents ahead before it hands on the first one.
    """

    name = "extract"

    def __init__(
        self,
        engine: str | ExtractFn = DEFAULT_ENGINE,
        timeout: float | None = 5.0,
        max_html_bytes: int = 8 << 20,
        batch_size: int = 16,
    ) -> None:
        super().__init__()
        if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT}] seconds (or None for no limit), got {timeout}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
        if not 1 <= max_html_bytes <= MAX_HTML_BYTES:
            raise ValueError(f"max_html_bytes must be between 1 and {MAX_HTML_BYTES}, got {max_html_bytes}")
        self.engine = engine if isinstance(engine, str) else getattr(engine, "__name__", "custom")
        self.fn = engine_function(engine)
        self.timeout = timeout
        self.max_html_bytes = max_html_bytes
        self.batch_size = batch_size
        self.worker: ExtractWorker | None = ExtractWorker(self.fn) if timeout is not None else None

    def prepare(self, doc: Document) -> tuple[str | None, str | None]:
        """(the reason to drop `doc` before extraction, the decoded HTML to extract); both None for a document
        that has text and no HTML, which passes through unchanged."""
        data = doc.html
        if data is None:
            return (None if doc.text.strip() else "extract_empty"), None
        if not data.strip():
            return "extract_empty", None
        if len(data) > self.max_html_bytes:
            return "extract_too_large", None
        http_charset = declared_charset(doc.metadata)
        if looks_binary(data, http_charset):
            return "extract_binary", None
        html, codec = decode_html(data, http_charset)
        doc.metadata["encoding"] = codec
        return None, html

    def finish(self, doc: Document, status: str, payload: str) -> str | None:
        """Put the extractor's reply into `doc` (text in, HTML out), or return the reason to drop it."""
        if status != "ok":
            if payload:
                doc.metadata["extract_error"] = payload
            return f"extract_{status}"
        text = tidy(payload)
        if not text.strip():
            return "extract_empty"
        doc.text = text
        doc.html = None
        return None

    def _run_here(self, html: str, url: str) -> Reply:
        """The extractor in this process, no time limit."""
        try:
            out = self.fn(html, url)
        except Exception as e:
            return "error", f"{type(e).__name__}: {str(e)[:200]}"
        return ("ok", out) if isinstance(out, str) else ("error", f"returned {type(out).__name__}")

    def extract(self, doc: Document) -> str | None:
        """Fill `doc.text` from `doc.html` and clear `doc.html`; or return the reason to drop `doc`."""
        reason, html = self.prepare(doc)
        if reason is not None or html is None:
            return reason
        if self.worker is None:
            return self.finish(doc, *self._run_here(html, doc.url))
        assert self.timeout is not None
        self._adopt_parked()
        return self.finish(doc, *self.worker.run(html, doc.url, self.timeout))

    def _adopt_parked(self) -> None:
        """Take over a parked worker (see `reuse_workers`) instead of starting one."""
        if self.worker is not None and self.worker.pid is None:
            parked = _unpark(self.fn)
            if parked is not None:
                self.worker = parked

    def _batches(self, docs: Iterable[Document]) -> Iterator[list[tuple[Document, str | None, str | None]]]:
        """(document, reason, html) from `prepare`, `batch_size` documents or `BATCH_CHARS` of HTML at a time."""
        batch: list[tuple[Document, str | None, str | None]] = []
        chars = 0
        for doc in docs:
            reason, html = self.prepare(doc)
            batch.append((doc, reason, html))
            chars += len(html) if html is not None else 0
            if len(batch) >= self.batch_size or chars >= BATCH_CHARS:
                yield batch
                batch, chars = [], 0
        if batch:
            yield batch

    def process(self, docs: Iterable[Document]) -> Iterator[Document]:
        try:
            if self.worker is None:
                for doc in docs:
                    reason = self.extract(doc)
                    if reason is None:
                        yield doc
                    else:
                        self.drop(doc, reason)
                return
            assert self.timeout is not None
            for batch in self._batches(docs):
                pages = [(html, doc.url) for doc, reason, html in batch if reason is None and html is not None]
                if pages:
                    self._adopt_parked()
                replies = iter(self.worker.run_batch(pages, self.timeout) if pages else [])
                for doc, reason, html in batch:  # in input order, as one page at a time would go
                    if reason is None and html is not None:
                        reason = self.finish(doc, *next(replies))
                    if reason is None:
                        yield doc
                    else:
                        self.drop(doc, reason)
        finally:
            self.close()  # also when the consumer stops early: no worker outlives its stream

    def close(self) -> None:
        """Stop the worker process, if any (a later document starts a new one); inside `reuse_workers()` a
        live worker is parked for the next Extractor instead."""
        if self.worker is not None and not _park(self.worker):
            self.worker.stop()
        if self.worker is not None and self.worker.pid is not None:  # parked: this step lets go of it
            self.worker = ExtractWorker(self.fn)


__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "ExtractWorker",
    "Extractor",
    "declared_charset",
    "decode_html",
    "engine_function",
    "extract_main_text",
    "extract_resiliparse",
    "extract_trafilatura",
    "looks_binary",
    "meta_charset",
    "reuse_workers",
    "tidy",
]
