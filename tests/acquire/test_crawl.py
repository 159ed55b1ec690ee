"""`kiln crawl` against real HTTP servers (tests/crawl_site.py): a trap site that exercises every rule of a polite
crawler (robots.txt, politeness delays, redirects, retries, timeouts, size limits, content types, charsets, scope,
nofollow, depth and page limits). Resuming and crash recovery are in test_crawl_resume.py; the docs site, the
HTML helpers and the CLI in test_crawl_cli.py.

Every crawl here reads its WARC output back with warcio and checks the server's request log, so "written once"
and "fetched once" are observed, not inferred from the crawler's own counters."""

from __future__ import annotations

import codecs
import itertools
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from crawl_site import HostsSite, Request, SiteServer, TrapSite, TreeSite
from crawl_support import (
    FAST,
    Record,
    config,
    state_rows,
    uris,
    warc_records,
)

from kiln import __version__
from kiln.acquire.crawl import CrawlConfig, CrawlSummary, run

# ------------------------------------------------------------------------------------------------ the trap site


@dataclass
class TrapCrawl:
    """A finished crawl of the trap site: the server (still running), its request log, the output and summary."""

    server: SiteServer
    site: TrapSite
    out: Path
    summary: CrawlSummary
    records: list[Record]
    requests: list[Request]

    def record(self, path: str) -> Record:
        """The one record for `path` (fails if there is none or more than one)."""
        (rec,) = [r for r in self.records if r.uri == self.server.url(path)]
        return rec

    def requested(self, path: str) -> list[Request]:
        """The server's log entries for `path`."""
        return [r for r in self.requests if r.path == path]


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrapCrawl]:
    """One complete crawl of the trap site with FAST settings (max_page_mb=1, max_redirects=5, 2 retries)."""
    site = TrapSite()
    out = tmp_path_factory.mktemp("trap")
    with SiteServer(site) as server:
        summary = run(config(server, out))
        yield TrapCrawl(server, site, out, summary, warc_records(out), server.requests)


def test_trap_crawl_writes_exactly_the_expected_pages_once(trap: TrapCrawl) -> None:
    """The WARC holds one 200 response per distinct page, nothing else; the summary agrees."""
    written = [r.uri for r in trap.records]
    assert Counter(written) == Counter(trap.server.url(p) for p in TrapSite.PAGES)
    assert all(r.status == "200" for r in trap.records)
    assert trap.summary.pages == trap.summary.pages_this_run == len(TrapSite.PAGES)
    assert trap.summary.queued == 0
    assert trap.summary.bytes == sum(len(r.body) for r in trap.records)
    assert trap.summary.warc_files == ["crawl-00000.warc.gz"]


def test_trap_records_hold_what_the_server_served_with_depth_and_parent(trap: TrapCrawl) -> None:
    """Body byte for byte, the HTTP headers that matter, and the kiln headers: depth from the seed and the page
    (or redirect) the URL was found on."""
    for path, (depth, parent) in TrapSite.PAGES.items():
        rec = trap.record(path)
        if path != "/huge":
            assert rec.body == trap.site.body(path), path
        assert rec.warc["WARC-Kiln-Depth"] == str(depth), path
        if parent is None:
            assert "WARC-Kiln-Parent" not in rec.warc
        else:
            assert rec.warc["WARC-Kiln-Parent"] == trap.server.url(parent), path
        assert rec.http["content-length"] == str(len(rec.body))
        assert rec.http["content-type"].startswith("text/html")
        assert rec.warc["WARC-Date"].endswith("Z")


def test_trap_each_url_requested_exactly_as_often_as_the_rules_say(trap: TrapCrawl) -> None:
    """The server log, in full: every page once whatever its spellings (no refetch for /a#frag, /./a, HTTP://...,
    /a?, the other query order, %7E), robots.txt once, /flaky twice (500 then 200), /always500 and /slow
    1 + retries times, every redirect hop up to max_redirects once, nothing else."""
    expected = Counter({p: 1 for p in TrapSite.PAGES})
    expected.update({"/robots.txt": 1, "/flaky": 1, "/always500": 3, "/slow": 3})
    for path in ("/loop1", "/loop2", "/old", "/away", "/missing", "/img.png", "/doc.pdf"):
        expected[path] += 1
    for n in range(6):  # /chain/0 (hops 0) .. /chain/5 (hops 5): its redirect would be the 6th
        expected[f"/chain/{n}"] += 1
    assert Counter(r.path for r in trap.requests) == expected


def test_trap_robots_txt_first_and_disallowed_paths_never_requested(trap: TrapCrawl) -> None:
    """robots.txt is the first request to the host; /private/ (Disallow) is never fetched but is recorded."""
    assert trap.requests[0].path == "/robots.txt"
    assert not [r for r in trap.requests if r.path.startswith("/private")]
    assert trap.summary.skipped["robots.txt disallows"] == 2
    rows = state_rows(trap.out)
    assert rows[trap.server.url("/private/secret")] == ("skipped", "robots.txt disallows")


def test_trap_redirects_loop_chain_and_plain(trap: TrapCrawl) -> None:
    """A redirect loop ends (the target is already seen); a chain stops after max_redirects hops with the reason in
    summary.failed; /old's target /new is crawled; a redirect out of scope is recorded, not followed."""
    rows = state_rows(trap.out)
    url = trap.server.url
    assert rows[url("/loop1")] == ("redirect", f"http 302 -> {url('/loop2')}")
    assert rows[url("/loop2")] == ("redirect", f"http 302 -> {url('/loop1')}")
    assert rows[url("/old")] == ("redirect", f"http 301 -> {url('/new')}")
    assert rows[url("/chain/5")] == ("failed", "more than 5 redirects")
    assert url("/chain/6") not in rows
    port = trap.server.port
    assert rows[url("/away")] == ("redirect", f"http 302 -> http://localhost:{port}/x (out of scope)")
    assert trap.summary.redirects == 9  # loop1, loop2, chain/0..4, old, away
    assert trap.summary.failed["more than 5 redirects"] == 1
    assert trap.record("/new").warc["WARC-Kiln-Parent"] == url("/old")


def test_trap_failures_and_retries(trap: TrapCrawl) -> None:
    """5xx and timeouts are retried with exponential backoff; /flaky succeeds on its retry; /always500 and /slow
    fail after 1 + retries attempts; a 404 fails at once."""
    assert trap.summary.failed == {"http 404": 1, "http 500": 1, "more than 5 redirects": 1, "timeout": 1}
    assert trap.summary.retries == 5  # flaky 1, always500 2, slow 2
    rows = state_rows(trap.out)
    assert rows[trap.server.url("/always500")] == ("failed", "http 500")
    assert rows[trap.server.url("/slow")] == ("failed", "timeout")
    assert rows[trap.server.url("/missing")] == ("failed", "http 404")
    assert rows[trap.server.url("/flaky")][0] == "done"
    starts = [r.start for r in trap.requested("/always500")]
    assert starts[1] - starts[0] >= 0.05 - 0.005  # backoff
    assert starts[2] - starts[1] >= 0.10 - 0.005  # backoff * 2


def test_trap_slow_page_times_out_without_waiting_for_the_answer(trap: TrapCrawl) -> None:
    """Each /slow attempt is abandoned after about read_timeout (0.3 s), long before the server's 1.5 s answer."""
    starts = [r.start for r in trap.requested("/slow")]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 2
    assert all(0.3 <= g < TrapSite.SLOW_SECONDS for g in gaps), gaps


def test_trap_huge_page_truncated_to_max_page_mb(trap: TrapCrawl) -> None:
    """A 3 MiB page is stored as its first max_page_mb (1 MiB) with WARC-Truncated: length; others are whole."""
    rec = trap.record("/huge")
    limit = 1 << 20
    assert len(trap.site.body("/huge")) > 2 * limit
    assert rec.body == trap.site.body("/huge")[:limit]
    assert rec.warc["WARC-Truncated"] == "length"
    assert rec.http["content-length"] == str(limit)
    assert [r.uri for r in trap.records if "WARC-Truncated" in r.warc] == [trap.server.url("/huge")]
    assert rec.warc["WARC-Kiln-Depth"] == "1"


def test_trap_binary_files_skipped_with_a_content_type_reason(trap: TrapCrawl) -> None:
    """Non-HTML responses are recorded as skipped (by content type) and their bodies are not stored."""
    assert trap.summary.skipped == {
        "content-type image/png": 1,
        "content-type application/pdf": 1,
        "robots.txt disallows": 2,
    }
    rows = state_rows(trap.out)
    assert rows[trap.server.url("/img.png")] == ("skipped", "content-type image/png")
    assert rows[trap.server.url("/doc.pdf")] == ("skipped", "content-type application/pdf")
    stored = [r for r in trap.records if b"PNG" in r.body[:8] or r.body.startswith(b"%PDF")]
    assert stored == []


def test_trap_latin1_page_stored_with_its_charset_and_its_link_followed(trap: TrapCrawl) -> None:
    """A page declaring ISO-8859-1 only in <meta> (the header has no charset) is stored as served, recorded as
    Latin-1, and its link is followed."""
    rec = trap.record("/latin1")
    assert codecs.lookup(rec.warc["WARC-Kiln-Charset"]).name == codecs.lookup("latin-1").name
    assert "caf\xe9" in rec.body.decode(rec.warc["WARC-Kiln-Charset"])
    assert b"caf\xe9" in rec.body
    assert rec.http["content-type"] == "text/html"
    assert trap.record("/latin1-target").warc["WARC-Kiln-Parent"] == trap.server.url("/latin1")
    assert trap.record("/a").warc["WARC-Kiln-Charset"] == "utf-8"


def test_trap_base_href_and_malformed_html(trap: TrapCrawl) -> None:
    """A relative link under <base href> resolves against the base; a link inside unclosed tags and garbage bytes
    is still found."""
    assert trap.record("/base-target/rel").warc["WARC-Kiln-Parent"] == trap.server.url("/based/page")
    assert trap.record("/from-malformed").warc["WARC-Kiln-Parent"] == trap.server.url("/malformed")
    assert not trap.requested("/based/rel")  # what the link would be without the base


def test_trap_out_of_scope_nofollow_mailto_and_javascript_never_requested(trap: TrapCrawl) -> None:
    """Other hosts (example.invalid, localhost: not 127.0.0.1) are never requested, not even their robots.txt;
    rel=nofollow and meta robots nofollow links are not followed; mailto: and javascript: are not URLs to crawl."""
    assert {r.host for r in trap.requests} == {f"127.0.0.1:{trap.server.port}"}
    for path in TrapSite.NEVER:
        assert not trap.requested(path), path
    rows = state_rows(trap.out)
    assert all(u.startswith(trap.server.base + "/") for u in rows), sorted(rows)
    assert not [u for u in rows if "nofollow-target" in u or "meta-hidden" in u]
    assert rows[trap.server.url("/metanofollow")][0] == "done"  # the page itself is fine, only its links are not


def test_trap_user_agent_names_kiln(trap: TrapCrawl) -> None:
    """Every request, robots.txt included, carries kiln's User-Agent."""
    agents = {r.user_agent for r in trap.requests}
    assert agents == {f"kiln/{__version__} (educational LLM data crawler; obeys robots.txt)"}


# ------------------------------------------------------------------------------------------------ limits


@pytest.mark.parametrize("max_depth", [0, 1, 3])
def test_max_depth(max_depth: int, tmp_path: Path) -> None:
    """Links more than max_depth hops from the seed are not even requested."""
    with SiteServer(TrapSite()) as server:
        summary = run(config(server, tmp_path, max_depth=max_depth, deny=["/slow"]))
        paths = server.paths()
    expected = {server.url(p) for p, (depth, _) in TrapSite.PAGES.items() if depth <= max_depth}
    assert Counter(uris(tmp_path)) == Counter(expected)
    assert summary.pages == len(expected)
    assert f"/d{max_depth}" in paths or max_depth == 0
    assert f"/d{max_depth + 1}" not in paths
    if max_depth == 0:
        assert paths == ["/robots.txt", "/"]


def test_max_pages_stops_after_exactly_that_many_pages(tmp_path: Path) -> None:
    """max_pages counts pages written; the rest stays queued."""
    with SiteServer(TrapSite()) as server:
        summary = run(config(server, tmp_path, max_pages=4, deny=["/slow"]))
    assert len(uris(tmp_path)) == len(set(uris(tmp_path))) == 4
    assert summary.pages == summary.pages_this_run == 4
    assert summary.queued > 0


# ------------------------------------------------------------------------------------------------ politeness


def _check_spacing(requests: list[Request], gap: float, slack: float = 0.05) -> None:
    """Requests never overlap, and consecutive page requests start at least `gap` apart (minus a little slack)."""
    for a, b in itertools.pairwise(requests):
        assert a.end > 0 and b.start >= a.end, (a, b)
    pages = [r for r in requests if r.path != "/robots.txt"]
    gaps = [b.start - a.start for a, b in itertools.pairwise(pages)]
    assert gaps and min(gaps) >= gap - slack, gaps


def test_politeness_one_connection_and_a_delay_per_host(tmp_path: Path) -> None:
    """per_host=1, delay=0.15 with concurrency 8: requests to the host never overlap and start >= delay apart."""
    with SiteServer(TreeSite(6, robots_status=200)) as server:
        summary = run(config(server, tmp_path, seed="/p/0", delay=0.15, per_host=1, concurrency=8))
        requests = server.requests
    assert summary.pages == 6
    _check_spacing(requests, 0.15)


def test_politeness_robots_crawl_delay_raises_the_gap(tmp_path: Path) -> None:
    """The trap site with `Crawl-delay: 0.3` in robots.txt and delay=0.05: page requests are spaced by the larger
    one (4 pages: /, /a, /q, /~user, the first links of /)."""
    with SiteServer(TrapSite(crawl_delay=0.3)) as server:
        summary = run(config(server, tmp_path, delay=0.05, per_host=1, concurrency=8, max_pages=4))
        requests = server.requests
    assert summary.pages == 4
    assert [r.path for r in requests] == ["/robots.txt", "/", "/a", "/q?x=1&y=2", "/~user"]
    _check_spacing(requests, 0.3)


def test_politeness_robots_txt_counts_as_a_request(tmp_path: Path) -> None:
    """robots.txt is a request to the host too: the first page waits `delay` after it."""
    with SiteServer(TreeSite(2, robots_status=200)) as server:
        run(config(server, tmp_path, seed="/p/0", delay=0.15, per_host=1))
        robots, first = server.requests[:2]
    assert (robots.path, first.path) == ("/robots.txt", "/p/0")
    assert first.start - robots.start >= 0.15 - 0.03


def test_robots_txt_server_error_keeps_the_crawler_out(tmp_path: Path) -> None:
    """robots.txt answering 5xx means "stay out" (RFC 9309): nothing else is requested, and the reason says robots.txt
    was unavailable, not that its rules disallow."""
    with SiteServer(TreeSite(3, robots_status=503)) as server:
        summary = run(config(server, tmp_path, seed="/p/0"))
        paths = server.paths()
    assert paths == ["/robots.txt"]
    assert summary.pages == 0
    assert summary.skipped == {"robots.txt unavailable (http 503: host kept out, RFC 9309)": 1}


# ------------------------------------------------------------------------------------------------ scope


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve *.test and *.example to 127.0.0.1 (the crawl runs in this process, so its resolver is ours)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        """socket.getaddrinfo with the test names pointed at the loopback address."""
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.endswith((".test", ".example")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


HOSTS = ["www.kiln.test", "docs.kiln.test", "other.example", "127.0.0.1"]


@pytest.mark.usefixtures("fake_dns")
@pytest.mark.parametrize(
    ("mode", "followed"),
    [
        ("host", ["www.kiln.test"]),
        ("domain", ["www.kiln.test", "docs.kiln.test"]),
        ("any", HOSTS),
    ],
)
def test_scope_modes(mode: str, followed: list[str], tmp_path: Path) -> None:
    """host: only the seed's host; domain: hosts under the seed's registered domain; any: everything linked.
    Hosts out of scope get no request at all (not even robots.txt)."""
    with SiteServer(HostsSite(HOSTS)) as server:
        seed = f"http://www.kiln.test:{server.port}/"
        summary = run(CrawlConfig(seeds=[seed], out_dir=str(tmp_path), scope=mode, **FAST))  # type: ignore[arg-type]
        requests = server.requests
    port = server.port
    assert {r.host for r in requests} == {f"{h}:{port}" for h in followed}
    expected = {seed} | {f"http://{h}:{port}/page" for h in followed}
    assert Counter(uris(tmp_path)) == Counter(expected)
    assert summary.pages == len(expected)


def test_allow_regex_limits_what_is_followed(tmp_path: Path) -> None:
    """With allow regexes only matching links are followed (the seed is always fetched)."""
    with SiteServer(TrapSite()) as server:
        run(config(server, tmp_path, allow=[r"/d\d+$"]))
        paths = server.paths()
    assert paths == ["/robots.txt", "/", "/d1", "/d2", "/d3", "/d4", "/d5", "/d6"]
    assert set(uris(tmp_path)) == {server.url(p) for p in ["/", "/d1", "/d2", "/d3", "/d4", "/d5", "/d6"]}


def test_deny_regexes_exclude_links(tmp_path: Path) -> None:
    """Deny regexes drop matching links before they are requested, whatever else they match."""
    deny = [r"/d[3-9]$", r"\.(png|pdf)$", "/slow", "always500", "/chain/", "/loop"]
    with SiteServer(TrapSite()) as server:
        summary = run(config(server, tmp_path, deny=deny, allow=[r":\d+/(d\d|doc\.pdf|slow|a)?$"]))
        paths = server.paths()
    assert paths == ["/robots.txt", "/", "/a", "/d1", "/d2"]
    assert summary.skipped == {} and summary.failed == {}
