"""`kiln crawl`: a polite, resumable web crawler that writes WARC.

What "polite" means here, as in well-behaved crawlers (Heritrix, Scrapy's defaults, Common Crawl's CCBot):
robots.txt is fetched first for every host and obeyed (protego, the parser Scrapy uses), including its
Crawl-delay; one connection per host and a delay between requests to it; a global concurrency limit; a
User-Agent that names kiln; timeouts; retries with exponential backoff only for 5xx, 429 and network errors.

The loop is asyncio + httpx: the main coroutine owns the SQLite state and the WARC writer (one writer, no
locks) and schedules fetch tasks on hosts that are free; each task fetches one URL (redirects are not
followed inside it: the target goes into the frontier like a link, so the visited set catches loops and a
redirect chain is capped by `max_redirects` hops), keeps only HTML-like responses (others are recorded as
skipped without downloading them), reads at most `max_page_mb`, decodes with the declared or detected
charset and extracts links with lxml.

Crash safety: a page's WARC record is written and fsynced, then its outcome, links and the WARC end offset
are committed to SQLite in one transaction. On start, records found after the committed offset (a crash
between the two steps) are taken as done and their links re-extracted from the stored body; a torn tail is
cut off. So after `kill -9` the same command continues without fetching a page again or losing one.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kiln.acquire.crawl_config import CrawlConfig
from kiln.acquire.crawl_state import CrawlState
from kiln.acquire.crawl_summary import SUMMARY_FILE, CrawlSummary
from kiln.acquire.urls import Scope, host_of, normalize_url
from kiln.acquire.warc_writer import RotatingWarcWriter, truncate_to, warc_date
from kiln.stage import write_resolved_config
from kiln.utils.checks import require
from kiln.utils.progress import progress_bar

__all__ = ["CrawlConfig", "CrawlSummary", "Crawler", "crawl", "detect_charset", "extract_links", "run"]

HTML_TYPES = ("text/html", "application/xhtml+xml")
STATE_FILE = "crawl.sqlite"
WARC_PREFIX = "crawl"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HOP_HEADERS = {"content-encoding", "transfer-encoding", "content-length", "connection", "keep-alive"}


@dataclass
class Fetch:
    """What one fetch task found; the main loop turns it into state changes."""

    url: str
    outcome: str  # page | redirect | skipped | retry | failed
    reason: str = ""
    status: int = 0
    http_reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    charset: str = ""
    links: list[str] = field(default_factory=list)
    target: str | None = None


# ------------------------------------------------------------------------------------------------------ HTML


def detect_charset(content_type: str, body: bytes) -> str:
    """Declared charset (HTTP header, then <meta>), else detected (charset-normalizer), else UTF-8."""
    m = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
    if not m:
        m = _META_CHARSET.search(body[:4096])  # type: ignore[assignment]
        name = m.group(1).decode("ascii", "replace") if m else None
    else:
        name = m.group(1)
    if name:
        import codecs

        try:
            return codecs.lookup(name).name
        except LookupError:
            pass
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:65536]).best()
        return best.encoding if best else "utf-8"


def extract_links(body: bytes, charset: str, base_url: str) -> list[str]:
    """Normalised absolute URLs of <a>/<area> hrefs (not rel=nofollow; none under meta robots nofollow)."""
    import lxml.etree
    import lxml.html

    # Decode in Python (which knows every charset name detect_charset can return; libxml2 does not know
    # e.g. "euc_jp"), drop an XML declaration (lxml refuses str input that declares an encoding), then parse.
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        doc = lxml.html.document_fromstring(text)
    except (lxml.etree.ParserError, ValueError):
        return []
    for meta in doc.iter("meta"):
        if (meta.get("name") or "").lower() == "robots" and "nofollow" in (meta.get("content") or "").lower():
            return []
    base = base_url
    for el in doc.iter("base"):
        if el.get("href"):
            base = normalize_url(el.get("href"), base_url) or base_url
            break
    links: list[str] = []
    for el in doc.iter("a", "area"):
        href = el.get("href")
        if not href or "nofollow" in (el.get("rel") or "").lower():
            continue
        url = normalize_url(href, base)
        if url:
            links.append(url)
    return list(dict.fromkeys(links))


def _complete_record(path: Path, offset: int, end: int, record: object, body: bytes) -> bool:
    """A record kiln wrote is whole if its gzip member ends with a valid trailer and the body has the
    Content-Length kiln put in its HTTP headers (warcio checks neither, so a torn tail can look readable)."""
    import zlib

    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(end - offset)
    d = zlib.decompressobj(31)
    try:
        d.decompress(raw)
    except zlib.error:
        return False
    if not d.eof or d.unused_data:
        return False
    http = getattr(record, "http_headers", None)
    declared = http.get_header("Content-Length") if http is not None else None
    return declared is None or declared == str(len(body))


# ------------------------------------------------------------------------------------------------------ robots


class HostUnreachable(Exception):
    """robots.txt could not be asked for at all (no connection, a timeout): the host is unreachable, which is a
    network failure to retry and then count as one, not a robots.txt verdict. The message is the reason a URL
    fails with: "HOST did not answer (connection refused)"."""


UNANSWERED = "did not answer"  # in the failure reason of every URL whose host never answered


def no_answer(netloc: str, error: BaseException) -> str:
    """The reason for a host that never answered, as `HOST did not answer (why)`: a refused connection, a timeout,
    a name that does not resolve."""
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        why = "timeout"
    else:
        chain: list[BaseException] = []  # httpx -> httpcore -> "all connection attempts failed" -> the OS's error
        cause: BaseException | None = error
        while cause is not None and len(chain) < 10:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        text = " ".join(str(c) for c in chain).lower()
        if any(isinstance(c, ConnectionRefusedError) for c in chain) or "refused" in text:
            why = "connection refused"
        elif "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            why = "the name does not resolve"
        else:
            why = f"network error: {type(error).__name__}"
    return f"{netloc} {UNANSWERED} ({why})"


class Robots:
    """robots.txt per origin (protego), as RFC 9309 reads it: 4xx = no rules (allow all); 5xx = unreachable, so
    keep out of the whole host. No answer at all is `HostUnreachable` (the host, not robots.txt, is the problem),
    and is not remembered, so a retry asks again."""

    def __init__(self, client: httpx.AsyncClient, user_agent: str) -> None:
        self.client = client
        self.agent = user_agent.split("/")[0]
        self.rules: dict[str, object] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def check(self, url: str) -> tuple[bool, float | None, bool]:
        """(allowed, crawl delay in seconds or None, whether robots.txt was requested just now). Why a URL is not
        allowed is `reason(url)`."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        lock = self.locks.setdefault(origin, asyncio.Lock())
        fetched = False
        async with lock:
            if origin not in self.rules:
                self.rules[origin] = await self._fetch(origin)
                fetched = True
        rules = self.rules[origin]
        if rules == "allow":
            return True, None, fetched
        if isinstance(rules, str):  # why the whole host is kept out
            return False, None, fetched
        delay = rules.crawl_delay(self.agent)  # type: ignore[union-attr]
        allowed = rules.can_fetch(url, self.agent)  # type: ignore[union-attr]
        return allowed, (float(delay) if delay else None), fetched

    def reason(self, url: str) -> str:
        """Why `check` kept `url` out: robots.txt's rules, or robots.txt being unavailable."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        rules = self.rules.get(f"{parts.scheme}://{parts.netloc}")
        return rules if isinstance(rules, str) and rules != "allow" else "robots.txt disallows"

    async def _fetch(self, origin: str) -> object:
        from protego import Protego

        try:
            resp = await self.client.get(origin + "/robots.txt", follow_redirects=True)
        except httpx.TooManyRedirects:
            return "robots.txt redirects in a loop (host kept out)"  # it answered, with no usable rules
        except (httpx.HTTPError, OSError, TimeoutError) as e:
            raise HostUnreachable(no_answer(origin.split("://", 1)[1], e)) from None
        if resp.status_code >= 500:
            return f"robots.txt unavailable (http {resp.status_code}: host kept out, RFC 9309)"
        if resp.status_code >= 400:
            return "allow"
        return Protego.parse(resp.content.decode("utf-8", errors="replace"))


# ------------------------------------------------------------------------------------------------------ fetching


async def fetch(client: httpx.AsyncClient, url: str, cfg: CrawlConfig) -> Fetch:
    """GET one URL: a page, a redirect, a skip (not HTML), or a retry/failure."""
    limit = int(cfg.max_page_mb * (1 << 20))
    try:
        async with asyncio.timeout(cfg.connect_timeout + 4 * cfg.timeout):
            async with client.stream("GET", url) as resp:
                status = resp.status_code
                if 300 <= status < 400:
                    location = resp.headers.get("location")
                    target = normalize_url(location, url) if location else None
                    if not target:
                        return Fetch(url, "failed", f"http {status} without a usable Location")
                    return Fetch(url, "redirect", f"http {status}", status=status, target=target)
                if status >= 500 or status == 429:
                    return Fetch(url, "retry", f"http {status}", status=status)
                if status >= 400:
                    return Fetch(url, "failed", f"http {status}", status=status)
                content_type = resp.headers.get("content-type", "")
                mime = content_type.split(";")[0].strip().lower()
                if mime not in HTML_TYPES:
                    return Fetch(url, "skipped", f"content-type {mime or 'missing'}", status=status)
                body = bytearray()
                truncated = False
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        del body[limit:]
                        truncated = True
                        break
                headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _HOP_HEADERS]
                headers.append(("Content-Length", str(len(body))))
                charset = detect_charset(content_type, bytes(body))
                links = extract_links(bytes(body), charset, url)
                return Fetch(
                    url, "page", "", status, resp.reason_phrase, headers, bytes(body), truncated, charset, links
                )
    except (httpx.TimeoutException, TimeoutError):
        return Fetch(url, "retry", "timeout")
    except httpx.TooManyRedirects:
        return Fetch(url, "failed", "too many redirects")
    except (httpx.HTTPError, OSError) as e:
        return Fetch(url, "retry", f"network error: {type(e).__name__}")


# ------------------------------------------------------------------------------------------------------ the crawl


class Crawler:
    def __init__(self, cfg: CrawlConfig) -> None:
        self.cfg = cfg.validate()
        given = cfg.all_seeds()
        seeds = [normalize_url(s) for s in given]
        bad = [s for s, n in zip(given, seeds, strict=True) if n is None]
        require(not bad, f"not crawlable http(s) URLs: {bad}")
        self.seeds = [s for s in seeds if s]
        self.scope = Scope(cfg.scope, self.seeds, cfg.allow, cfg.deny)
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = CrawlState(self.out / STATE_FILE)
        self.writer = RotatingWarcWriter(self.out, WARC_PREFIX, int(cfg.warc_mb * (1 << 20)))
        self.host_delay: dict[str, float] = {}
        self.host_next: dict[str, float] = {}
        self.host_busy: Counter[str] = Counter()
        self.started = time.monotonic()

    # ---------------------------------------------------------------------------------------------- recovery

    def recover(self) -> int:
        """Take in WARC records written after the last commit (a crash between write and commit)."""
        from warcio.archiveiterator import ArchiveIterator

        committed = self.state.get("warc")
        files = sorted(self.out.glob(f"{WARC_PREFIX}-*.warc.gz"))
        recovered = 0
        for path in files:
            start = 0
            if committed:
                if path.name < committed[0]:
                    continue
                if path.name == committed[0]:
                    start = committed[1]
            if path.stat().st_size <= start:
                continue
            good_end = start
            with open(path, "rb") as f:
                f.seek(start)
                it = ArchiveIterator(f)
                try:
                    for record in it:
                        body = record.content_stream().read()
                        offset = it.get_record_offset()  # absolute, like the length: read after the body
                        end = offset + it.get_record_length()
                        url = record.rec_headers.get_header("WARC-Target-URI")
                        if not url or not _complete_record(path, offset, end, record, body):
                            break  # torn: everything from this record on is cut off below
                        if self.state.status_of(url) != "done":
                            self._commit_page(url, record, body, (path.name, end))
                            recovered += 1
                        good_end = end
                except Exception:  # an unreadable record at the tail: cut it off below
                    pass
            truncate_to(path, good_end)
            if good_end > start:
                self.state.commit_warc((path.name, good_end))
        return recovered

    def _commit_page(self, url: str, record: object, body: bytes, warc: tuple[str, int]) -> None:
        headers = record.rec_headers  # type: ignore[attr-defined]
        charset = headers.get_header("WARC-Kiln-Charset") or "utf-8"
        depth = int(headers.get_header("WARC-Kiln-Depth") or 0)
        links = self._link_rows(extract_links(body, charset, url), depth, url)
        self.state.finish(url, "done", links=links, warc=warc, counters={"pages": 1, "bytes": len(body)})

    def _link_rows(self, links: list[str], depth: int, parent: str) -> list[tuple[str, str, int, str | None, int]]:
        if depth + 1 > self.cfg.max_depth:
            return []
        return [(u, host_of(u), depth + 1, parent, 0) for u in links if self.scope.allows(u)]

    # ---------------------------------------------------------------------------------------------- results

    def _handle(self, row: tuple, result: Fetch) -> None:
        url, _host, depth, parent, hops, attempts = row
        if result.outcome == "page":
            extra = {"WARC-Kiln-Depth": str(depth), "WARC-Kiln-Charset": result.charset}
            if parent:
                extra["WARC-Kiln-Parent"] = parent
            if result.truncated:
                extra["WARC-Truncated"] = "length"
            warc = self.writer.write_response(
                url, result.status, result.http_reason, result.headers, result.body, extra, warc_date()
            )
            links = self._link_rows(result.links, depth, url)
            self.state.finish(url, "done", links=links, warc=warc, counters={"pages": 1, "bytes": len(result.body)})
        elif result.outcome == "redirect":
            target = result.target
            assert target is not None
            if hops + 1 > self.cfg.max_redirects:
                reason = f"more than {self.cfg.max_redirects} redirects"
                self.state.finish(url, "failed", reason, counters={"errors": 1})
            else:
                follow = self.scope.allows(target)
                rows = [(target, host_of(target), depth, url, hops + 1)] if follow else []
                reason = f"{result.reason} -> {target}" + ("" if follow else " (out of scope)")
                self.state.finish(url, "redirect", reason, links=rows, counters={"redirects": 1})
        elif result.outcome == "retry" and attempts < self.cfg.retries:
            self.state.retry_later(url, self.cfg.backoff * 2**attempts, result.reason)
            self.state.finish(url, "queued", result.reason, counters={"retries": 1})
        elif result.outcome in ("retry", "failed"):
            self.state.finish(url, "failed", result.reason, counters={"errors": 1})
        else:
            self.state.finish(url, "skipped", result.reason, counters={"skipped": 1})

    # ---------------------------------------------------------------------------------------------- main loop

    async def _task(self, client: httpx.AsyncClient, robots: Robots, row: tuple) -> Fetch:
        url, host = row[0], row[1]
        try:
            allowed, crawl_delay, fetched_robots = await robots.check(url)
        except HostUnreachable as e:  # retried like any network error, then counted as failed with its reason
            return Fetch(url, "retry", str(e))
        if crawl_delay is not None:
            self.host_delay[host] = max(self.cfg.delay, crawl_delay)
        if not allowed:
            return Fetch(url, "skipped", robots.reason(url))
        gap = self.host_delay.get(host, self.cfg.delay)
        if fetched_robots and gap > 0:
            await asyncio.sleep(gap)  # robots.txt was a request to this host too: keep the spacing
        self.host_next[host] = max(self.host_next.get(host, 0.0), time.monotonic() + gap)
        return await fetch(client, url, self.cfg)

    async def run(self) -> CrawlSummary:
        cfg = self.cfg
        self.state.add((s, host_of(s), 0, None, 0) for s in self.seeds)
        recovered = self.recover()
        done_before = self.pages_before = self.state.counters().get("pages", 0)
        bar = progress_bar(
            total=cfg.max_pages or None, initial=done_before, unit="page", desc="crawl", disable=cfg.quiet
        )
        timeout = httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout)
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        tasks: dict[asyncio.Task, tuple] = {}
        async with httpx.AsyncClient(
            headers={"User-Agent": cfg.user_agent}, timeout=timeout, limits=limits, follow_redirects=False
        ) as client:
            robots = Robots(client, cfg.user_agent)
            while True:
                pages = self.state.counters().get("pages", 0)
                stopping = bool(cfg.max_pages) and pages + len(tasks) >= cfg.max_pages
                if not stopping and len(tasks) < cfg.concurrency:
                    room = cfg.max_pages - pages - len(tasks) if cfg.max_pages else cfg.concurrency
                    self._schedule(client, robots, tasks, room)
                if not tasks:
                    due = self.state.next_due() if self.state.pending() else None
                    if due is None or stopping:
                        break
                    waits = [max(0.0, due - time.time())]
                    waits += [t - time.monotonic() for t in self.host_next.values() if t > time.monotonic()]
                    await asyncio.sleep(min(max(min(waits), 0.005), 1.0))
                    continue
                done, _ = await asyncio.wait(tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    row = tasks.pop(task)
                    self.host_busy[row[1]] -= 1
                    self._handle(row, task.result())
                    if task.result().outcome == "page":
                        bar.update(1)
                counts = self.state.counters()
                bar.set_postfix(queue=self.state.pending(), errors=counts.get("errors", 0), refresh=False)
        bar.close()
        self.writer.close()
        summary = self.summary(recovered)
        self.state.close()
        return summary

    def _schedule(self, client: httpx.AsyncClient, robots: Robots, tasks: dict, room: int) -> None:
        now = time.monotonic()
        busy = {h for h, n in self.host_busy.items() if n >= self.cfg.per_host}
        waiting = {h for h, t in self.host_next.items() if t > now}
        in_flight = {row[0] for row in tasks.values()}
        free = min(self.cfg.concurrency - len(tasks), room)
        rows = self.state.queued(free * 4, busy | waiting, in_flight)
        started = 0
        for row in rows:
            host = row[1]
            if started >= free:
                break
            if self.host_busy[host] >= self.cfg.per_host or self.host_next.get(host, 0.0) > now:
                continue
            self.host_busy[host] += 1
            self.host_next[host] = now + self.host_delay.get(host, self.cfg.delay)
            tasks[asyncio.create_task(self._task(client, robots, row))] = row
            started += 1

    def summary(self, recovered: int = 0) -> CrawlSummary:
        counts = self.state.counters()
        statuses = self.state.status_counts()
        return CrawlSummary(
            pages=counts.get("pages", 0),
            pages_this_run=counts.get("pages", 0) - getattr(self, "pages_before", 0),
            bytes=counts.get("bytes", 0),
            redirects=statuses.get("redirect", 0),
            skipped=self.state.reasons("skipped"),
            failed=self.state.reasons("failed"),
            queued=statuses.get("queued", 0),
            retries=counts.get("retries", 0),
            recovered_from_warc=recovered,
            seconds=time.monotonic() - self.started,
            out_dir=str(self.out),
            warc_files=sorted(p.name for p in self.out.glob(f"{WARC_PREFIX}-*.warc.gz")),
        )


def run(config: CrawlConfig) -> CrawlSummary:
    """Run (or continue) a crawl. The config is checked (seeds too) before anything is created on disk; the
    resolved config is written before the first fetch, so an interrupted crawl can be continued from it; the
    summary is also written to <out_dir>/summary.json."""
    crawler = Crawler(config)
    write_resolved_config(config, config.out_dir, "crawl")
    summary = asyncio.run(crawler.run())
    summary.write(Path(config.out_dir) / SUMMARY_FILE)
    unreachable = {
        r: n for r, n in summary.failed.items() if UNANSWERED in r or r.startswith(("network error", "timeout"))
    }
    if summary.pages == 0 and summary.queued == 0 and unreachable and unreachable == summary.failed:
        # Nothing fetched because nothing answered: a failure of the run (exit 2), not an empty success.
        hosts = sorted(r for r in unreachable if UNANSWERED in r)
        reasons = "; ".join(hosts) or ", ".join(f"{n} {r}" for r, n in sorted(unreachable.items()))
        raise ConnectionError(f"{reasons}: no page fetched; summary in {config.out_dir}")
    return summary


def crawl(cfg: CrawlConfig) -> dict:
    """`run`, returning the summary as a dict (the entry point from before the stage contract)."""
    return run(cfg).to_json()
