"""HTML text extraction speed, resiliparse against trafilatura, on real pages.

    python benchmarks/extract.py [--rounds 3] [--docs-pages 20]

Pages: every HTML response in the real WARC samples of ../shared/data/web/warc (Common Crawl 2020, clueweb09
EUC-JP, wget crawls of personal and institutional sites, a Wikipedia page), and `--docs-pages` pages spread
evenly over the Python 3.11 docs (../shared/data/web/site/python-3.11.2-docs-html.tar.xz): long, regular,
code-heavy pages with a lot of navigation around them.

Two measurements per engine, side by side:
- engine: the extraction function alone, in-process, on pages decoded beforehand (the engine's own speed);
- step: `kiln.clean.extract.Extractor` as `kiln clean` runs it (charset decoding, checks, the worker
  process with its per-page time limit, tidying): what the pipeline actually gets.

docs/s and MB/s (of raw HTML bytes, MB = 10^6) of the best of `--rounds` rounds (timeit's rule: other work
on a shared machine only ever slows a round down); rounds alternate between engines so a drift in machine
speed hits both. The last columns say how much text came out: a fast extractor that drops the article is no
bargain (see the module docstring of kiln.clean.extract for the quality comparison).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from kiln.acquire.warc import IngestStats, iter_records
from kiln.clean.extract import ENGINES, Extractor, declared_charset, decode_html, engine_function
from kiln.clean.pipeline import Document, run_steps

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "web"
WARC_DIR = SHARED / "warc"
DOCS_TAR = SHARED / "site" / "python-3.11.2-docs-html.tar.xz"

Page = tuple[str, bytes, dict[str, str]]  # url, raw HTML, metadata


def warc_pages() -> list[Page]:
    pages = []
    for path in sorted(WARC_DIR.glob("*.warc.gz")):
        for rec in iter_records(path, IngestStats(), content_types=["text/html"]):
            pages.append((rec.url, rec.body, {"content_type": rec.content_type}))
    return pages


def docs_pages(n: int) -> list[Page]:
    with tarfile.open(DOCS_TAR) as tf:
        names = sorted(m.name for m in tf.getmembers() if m.name.endswith(".html"))
        step = max(1, len(names) // max(n, 1))
        chosen = names[::step][:n]
        return [(f"https://docs.python.org/3.11/{name[5:]}", tf.extractfile(name).read(), {}) for name in chosen]  # type: ignore[union-attr]


def time_engine(fn: Callable[[str, str], str], decoded: list[tuple[str, str]]) -> tuple[float, int]:
    start = time.perf_counter()
    chars = sum(len(fn(html, url) or "") for url, html in decoded)
    return time.perf_counter() - start, chars


def time_step(engine: str, pages: list[Page]) -> tuple[float, int]:
    docs = [Document(str(i), url=url, html=raw, metadata=dict(meta)) for i, (url, raw, meta) in enumerate(pages)]
    step = Extractor(engine, timeout=30)
    step.worker._start()  # type: ignore[union-attr]  # worker start-up (fork + warm-up) is not per-page cost
    start = time.perf_counter()
    chars = sum(len(d.text) for d in run_steps(docs, [step]))
    return time.perf_counter() - start, chars


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docs-pages", type=int, default=20)
    args = ap.parse_args()
    if not WARC_DIR.is_dir() or not DOCS_TAR.is_file():
        print(f"needs the shared data in {SHARED}", file=sys.stderr)
        return 1
    corpora = {"warc": warc_pages(), "docs": docs_pages(args.docs_pages)}
    fns = {engine: engine_function(engine) for engine in ENGINES}
    print(f"python {platform.python_version()} on {platform.machine()}, best of {args.rounds} rounds")
    for name, pages in corpora.items():
        size = sum(len(raw) for _, raw, _ in pages)
        decoded = [(url, decode_html(raw, declared_charset(meta))[0]) for url, raw, meta in pages]
        print(f"\n{name}: {len(pages)} pages, {size / 1e6:.2f} MB of HTML")
        print(f"{'engine':12s} {'mode':6s} {'docs/s':>8s} {'MB/s':>7s} {'text chars':>11s} {'text/html':>9s}")
        best: dict[tuple[str, str], tuple[float, int]] = {}
        for _ in range(args.rounds):
            for engine in ENGINES:
                for mode in ("engine", "step"):
                    secs, chars = time_engine(fns[engine], decoded) if mode == "engine" else time_step(engine, pages)
                    if (engine, mode) not in best or secs < best[engine, mode][0]:
                        best[engine, mode] = (secs, chars)
        for (engine, mode), (secs, chars) in best.items():
            print(
                f"{engine:12s} {mode:6s} {len(pages) / secs:8.1f} {size / 1e6 / secs:7.2f} {chars:11d} "
                f"{chars / size:9.1%}"
            )
        r, t = best["resiliparse", "engine"][0], best["trafilatura", "engine"][0]
        print(f"resiliparse is {t / r:.1f}x faster than trafilatura (engine alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
