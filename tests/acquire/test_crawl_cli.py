"""`kiln crawl` on a real site (the Python docs, from shared data), its HTML helpers (charset detection, link
extraction), config validation and the command line."""

from __future__ import annotations

import socket
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from crawl_site import SiteServer, StaticSite, TrapSite, TreeSite
from crawl_support import (
    config,
    uris,
)

from helpers import run_cli
from kiln.acquire.crawl import CrawlConfig, Crawler, detect_charset, extract_links, run

# ------------------------------------------------------------------------------------------------ a real site

DOCS_ORPHANS = {
    "distutils/_setuptools_disclaimer.html",
    "distutils/packageindex.html",
    "distutils/uploading.html",
    "includes/wasm-notavail.html",
}


@pytest.mark.shared
@pytest.mark.slow
def test_python_docs_site(shared_data: Path, tmp_path: Path) -> None:
    """The Python 3.11.2 HTML docs served locally: every page reachable from index.html written exactly once (530
    HTML files less 4 orphans no page links to), each fetched once, and the 4 broken links failing as 404."""
    with tarfile.open(shared_data / "web" / "site" / "python-3.11.2-docs-html.tar.xz") as tar:
        tar.extractall(tmp_path / "site", filter="data")
    root = tmp_path / "site" / "html"
    html = {p.relative_to(root).as_posix() for p in root.rglob("*.html")}
    assert len(html) == 530 and html >= DOCS_ORPHANS
    out = tmp_path / "crawl"
    with SiteServer(StaticSite(tmp_path / "site")) as server:
        cfg = config(server, out, seed="/html/index.html", per_host=8, concurrency=8, timeout=20, max_page_mb=5)
        summary = run(cfg)
        counts = Counter(server.paths())
    expected = {server.url(f"/html/{p}") for p in html - DOCS_ORPHANS}
    written = uris(out)
    assert len(written) == summary.pages == 526
    assert set(written) == expected
    assert summary.failed == {"http 404": 4}
    assert summary.skipped == {}
    assert max(counts.values()) == 1


# ------------------------------------------------------------------------------------------------ HTML helpers


def test_detect_charset_prefers_the_header_then_meta_then_detection() -> None:
    """The HTTP header's charset wins, then <meta charset> / http-equiv, then UTF-8 if it decodes, else a guess."""
    latin = "<p>caf\xe9</p>".encode("latin-1")
    assert detect_charset("text/html; charset=ISO-8859-1", b'<meta charset="utf-8">') == "iso8859-1"
    assert detect_charset('text/html; charset="Windows-1252"', b"") == "cp1252"
    assert detect_charset("text/html", b'<meta charset="iso-8859-1">' + latin) == "iso8859-1"
    http_equiv = b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'
    assert detect_charset("text/html", http_equiv) == "koi8-r"
    assert detect_charset("text/html", "<p>caf\xe9 \u20ac</p>".encode()) == "utf-8"
    assert detect_charset("text/html; charset=no-such-codec", b"<p>plain</p>") == "utf-8"
    cp1252 = "<p>Ceci est un caf\xe9 tr\xe8s cher, na\xefvet\xe9.</p>".encode("cp1252")
    guessed = detect_charset("text/html", cp1252)
    assert guessed != "utf-8"
    assert len(cp1252.decode(guessed)) == len(cp1252)  # a single-byte guess that decodes the page


def test_extract_links_rules() -> None:
    """<a> and <area> hrefs, resolved (against <base href> if any), normalised and deduplicated in document order;
    rel=nofollow, mailto:, javascript: and fragments-only-different duplicates dropped; meta robots nofollow: none."""
    body = b"""<html><head><title>t</title></head><body>
        <a href="/b">b</a> <a href="c#x">c</a> <a href="/b#again">b again</a>
        <a rel="nofollow" href="/nf">no</a> <a rel="external NoFollow" href="/nf2">no</a>
        <a href="mailto:x@y.z">m</a> <a href="javascript:go()">j</a> <a>no href</a> <a href="">empty</a>
        <map><area href="/area" alt="x"></map> <a href="HTTP://OTHER.org:80/x?b=2&a=1">o</a>
        </body></html>"""
    assert extract_links(body, "utf-8", "http://h.org/dir/page") == [
        "http://h.org/b",
        "http://h.org/dir/c",
        "http://h.org/area",
        "http://other.org/x?a=1&b=2",
    ]
    based = b'<html><head><base href="http://cdn.org/x/"></head><body><a href="y">y</a></body></html>'
    assert extract_links(based, "utf-8", "http://h.org/") == ["http://cdn.org/x/y"]
    meta = b'<html><head><meta name="ROBOTS" content="noindex,nofollow"></head><body><a href="/a">a</a></body></html>'
    assert extract_links(meta, "utf-8", "http://h.org/") == []
    latin = '<a href="/caf\xe9">c</a>'.encode("latin-1")
    assert extract_links(latin, "iso8859-1", "http://h.org/") == ["http://h.org/caf%C3%A9"]


@pytest.mark.parametrize("declared", ["euc-jp", "EUC-KR", "iso-2022-jp", "macintosh"])
def test_links_found_on_pages_in_any_declared_charset(declared: str) -> None:
    """A page declaring a charset Python knows keeps its links (here EUC-JP, EUC-KR, ISO-2022-JP, Mac Roman)."""
    body = f'<html><head><meta charset="{declared}"></head><body><a href="/next">n</a></body></html>'.encode()
    charset = detect_charset("text/html", body)
    assert extract_links(body, charset, "http://h.org/") == ["http://h.org/next"]


# ------------------------------------------------------------------------------------------------ config and CLI


def test_bad_config_and_seeds_are_value_errors(tmp_path: Path) -> None:
    """Config mistakes are ValueErrors naming the problem, raised before anything is created on disk."""
    with pytest.raises(ValueError, match="at least one seed"):
        Crawler(CrawlConfig(seeds=[], out_dir=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="not crawlable"):
        Crawler(CrawlConfig(seeds=["ftp://h.org/x"], out_dir=str(tmp_path / "b")))
    with pytest.raises(ValueError, match="per_host"):
        Crawler(CrawlConfig(seeds=["http://h.org/"], out_dir=str(tmp_path / "c"), per_host=0))
    with pytest.raises(ValueError, match="bad allow/deny regex"):
        Crawler(CrawlConfig(seeds=["http://h.org/"], out_dir=str(tmp_path / "d"), deny=["("]))
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_cli_crawl_prints_counts_and_resumes(tmp_path: Path) -> None:
    """`kiln crawl URL --out D --delay 0 --quiet` exits 0 and prints the page counts (and the failure reasons);
    the same command again has nothing left to do."""
    out = str(tmp_path / "crawl")
    with SiteServer(TrapSite()) as server:
        argv = ["crawl", server.url("/"), "--out", out, "--delay", "0", "--quiet", "--timeout", "1"]
        argv += ["--deny", "/slow", "--deny", "flaky", "--deny", "always500"]  # no retries (1 s CLI backoff)
        rc, stdout, stderr = run_cli(argv)
        assert rc == 0, stderr
        n = len(TrapSite.PAGES) - 1  # /flaky is denied
        assert stdout.startswith(f"{n} pages (")
        assert f"{n} of them in this run" in stdout
        assert "failed: 1 http 404, 1 more than 5 redirects" in stdout
        assert "skipped: 1 content-type application/pdf, 1 content-type image/png, 2 robots.txt disallows" in stdout
        assert (tmp_path / "crawl" / "summary.json").is_file()
        rc, stdout, stderr = run_cli(argv)
        assert rc == 0, stderr
        assert stdout.startswith(f"{n} pages (") and "0 of them in this run" in stdout
    assert len(uris(tmp_path / "crawl")) == n


def test_cli_non_http_seed_exits_2_with_a_one_line_error(tmp_path: Path) -> None:
    """A seed that is not an http(s) URL: exit 2, one line on stderr naming it, nothing on stdout or disk."""
    rc, stdout, stderr = run_cli(["crawl", "ftp://example.com/", "--out", str(tmp_path / "c"), "--quiet"])
    assert rc == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("kiln crawl: error: not crawlable http(s) URLs")
    assert "ftp://example.com/" in stderr
    assert not (tmp_path / "c").exists()


def test_cli_missing_seeds_file_exits_2(tmp_path: Path) -> None:
    """--seeds-file naming a missing file: exit 2 with one line saying which file, no traceback."""
    missing = tmp_path / "nope.txt"
    rc, _, stderr = run_cli(["crawl", "--seeds-file", str(missing), "--out", str(tmp_path / "c"), "--quiet"])
    assert rc == 2
    assert stderr == f"kiln crawl: error: seeds file not found: {missing}\n"


def test_cli_seeds_file_and_no_seeds(tmp_path: Path) -> None:
    """Seeds come from the file too (blank lines and # comments ignored); no seed at all is exit 2."""
    with SiteServer(TreeSite(3)) as server:
        seeds = tmp_path / "seeds.txt"
        seeds.write_text(f"# my seeds\n\n  {server.url('/p/0')}  \n", encoding="utf-8")
        argv = ["crawl", "--seeds-file", str(seeds), "--out", str(tmp_path / "c"), "--delay", "0", "--quiet"]
        rc, stdout, stderr = run_cli(argv)
    assert rc == 0, stderr
    assert stdout.startswith("3 pages (")
    rc, _, stderr = run_cli(["crawl", "--out", str(tmp_path / "d"), "--quiet"])
    assert rc == 2 and "give at least one seed URL" in stderr


# ------------------------------------------------------------------------------------------ hosts that do not answer


def test_cli_host_refusing_connections_is_named_as_not_answering(tmp_path: Path) -> None:
    """A closed port: the crawl fails (exit 2) with one line naming the host and why, not as a robots.txt rule."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    argv = ["crawl", f"http://127.0.0.1:{port}/", "--out", str(tmp_path / "c"), "--quiet", "retries=0"]
    rc, stdout, stderr = run_cli(argv)
    assert rc == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith(f"kiln crawl: error: 127.0.0.1:{port} did not answer (connection refused)")
    assert "robots.txt" not in stderr


def test_cli_host_that_never_answers_times_out_and_says_so(tmp_path: Path) -> None:
    """A host that accepts the connection and then says nothing: "did not answer (timeout)" after --timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or answers
        port = silent.getsockname()[1]
        argv = ["crawl", f"http://127.0.0.1:{port}/", "--out", str(tmp_path / "c"), "--quiet", "retries=0"]
        rc, _, stderr = run_cli([*argv, "timeout=0.3"])
    assert rc == 2 and stderr.count("\n") == 1
    assert f"127.0.0.1:{port} did not answer (timeout)" in stderr
