"""Crawling the local Python docs site: kiln vs Scrapy, same site, same concurrency, politeness off.

    pip install -e .[bench]          # scrapy
    python benchmarks/crawl.py [--rounds 3] [--concurrency 8]

The site is `../shared/data/web/site/python-3.11.2-docs-html.tar.xz` (530 HTML pages, 526 reachable from
/html/index.html, 52 MB), unpacked to a temp dir and served by a threaded `http.server` on 127.0.0.1 in a
separate process. Both crawlers start at /html/index.html, follow every in-site link, obey robots.txt
(there is none: 404), with no delay and `--concurrency` requests in flight (all on the one host), and
store what they fetch: kiln writes gzipped WARC records (fsynced) plus its SQLite state; Scrapy (a
CrawlSpider with a LinkExtractor, HTTP cache off) writes every page's URL and body to a JSON Lines feed.
Each crawler runs as a fresh process and is timed from launch to exit; rounds alternate; best of N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT.parent / "shared" / "data" / "web" / "site" / "python-3.11.2-docs-html.tar.xz"

SPIDER = """
import scrapy
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class Docs(CrawlSpider):
    name = "docs"
    allowed_domains = ["127.0.0.1"]
    start_urls = ["{start}"]
    rules = (Rule(LinkExtractor(), callback="parse_item", follow=True),)

    def parse_start_url(self, response):
        return self.parse_item(response)

    def parse_item(self, response):
        yield {{"url": response.url, "body": response.text}}
"""


def serve(directory: Path) -> tuple[subprocess.Popen, int]:
    """A threaded static server in its own process (so its CPU is not charged to either crawler's process)."""
    port_file = directory.parent / "port"
    code = (
        "import functools, http.server, sys\n"
        "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
        "http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None\n"
        "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n"
        "open(sys.argv[2], 'w').write(str(s.server_address[1]))\n"
        "s.serve_forever()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory), str(port_file)])
    for _ in range(100):
        if port_file.exists() and port_file.read_text():
            return proc, int(port_file.read_text())
        time.sleep(0.05)
    proc.kill()
    sys.exit("the static server did not start")


def run_kiln(start: str, out: Path, concurrency: int) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "kiln", "crawl", start, "--out", str(out), "--delay", "0", "--quiet",
           "--concurrency", str(concurrency), "--per-host", str(concurrency)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    return seconds, json.loads((out / "summary.json").read_text())["pages"]


def run_scrapy(start: str, out: Path, concurrency: int) -> tuple[float, int]:
    out.mkdir(parents=True)
    spider = out / "spider.py"
    spider.write_text(SPIDER.format(start=start))
    feed = out / "pages.jsonl"
    settings = {
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": True,
        "LOG_LEVEL": "ERROR",
        "TELNETCONSOLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
    }
    cmd = [sys.executable, "-m", "scrapy", "runspider", str(spider), "-o", f"{feed}:jsonlines"]
    for key, value in settings.items():
        cmd += ["-s", f"{key}={value}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=out)
    seconds = time.perf_counter() - t0
    return seconds, sum(1 for _ in open(feed, encoding="utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    if not SITE.exists():
        sys.exit(f"needs {SITE}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        root.mkdir()
        with tarfile.open(SITE) as tar:
            tar.extractall(root, filter="data")
        server, port = serve(root)
        start = f"http://127.0.0.1:{port}/html/index.html"
        best: dict[str, tuple[float, int]] = {}
        try:
            for r in range(args.rounds):
                for name, fn in (("kiln", run_kiln), ("scrapy", run_scrapy)):
                    seconds, pages = fn(start, Path(tmp) / f"{name}-{r}", args.concurrency)
                    print(f"round {r + 1}: {name:<6} {pages} pages in {seconds:.2f} s ({pages / seconds:.1f} pages/s)")
                    if name not in best or seconds < best[name][0]:
                        best[name] = (seconds, pages)
        finally:
            server.kill()
    print(f"\ncrawl, concurrency {args.concurrency}, politeness off, best of {args.rounds} (launch to exit):")
    for name, (seconds, pages) in best.items():
        print(f"{name:<6} {pages} pages, {seconds:.2f} s, {pages / seconds:.1f} pages/s")
    ratio = (best["kiln"][1] / best["kiln"][0]) / (best["scrapy"][1] / best["scrapy"][0])
    print(f"kiln / scrapy pages/s: {ratio:.2f}x   (machine: {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
