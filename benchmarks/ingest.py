"""Reading speed of `kiln ingest`'s reader against warcio, on the real WARC samples in ../shared/data/web/warc.

    python benchmarks/ingest.py [--rounds 5] [--repeat 20]

Every file in the folder (Common Crawl WARC/WET/WAT, wget, warcio's example, the clueweb09 quirk file) is
read with all record types and every body read in full:

- kiln: `kiln.acquire.warc.iter_records(path, stats, record_types=None)` (FastWARC in strict mode, HTTP heads
  parsed in quirks mode, response bodies decoded, the lookahead and end-of-file checks of a robust reader);
- warcio: `ArchiveIterator(f, arc2warc=True)` with `record.content_stream().read()` (decoded bodies too);
- FastWARC alone, raw blocks, no checks: the floor kiln's reader is built on, for scale.

The samples are small (about 0.9 MB gzipped), so one round reads the whole folder `--repeat` times. Rounds
alternate between readers so a drift in machine speed hits all of them; the best round of each is printed
(timeit's rule: other work on a shared machine only ever slows a round down). Record counts are checked
equal before timing.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from warcio.archiveiterator import ArchiveIterator as WarcioIterator

from kiln.acquire.warc import IngestStats, iter_records

WARC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "web" / "warc"


def read_kiln(files: list[Path]) -> tuple[int, int]:
    records = size = 0
    stats = IngestStats()
    for path in files:
        for rec in iter_records(path, stats, record_types=None):
            records += 1
            size += len(rec.body)
    return records, size


def read_warcio(files: list[Path]) -> tuple[int, int]:
    records = size = 0
    for path in files:
        with open(path, "rb") as f:
            for rec in WarcioIterator(f, arc2warc=True):
                records += 1
                size += len(rec.content_stream().read())
    return records, size


def read_fastwarc(files: list[Path]) -> tuple[int, int]:
    records = size = 0
    for path in files:
        with open(path, "rb") as f:
            for rec in FastArchiveIterator(f, parse_http=False, verify_digests=False):
                records += 1
                size += len(rec.reader.read())
    return records, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20, help="passes over the folder per round")
    ap.add_argument("--dir", type=Path, default=WARC_DIR)
    args = ap.parse_args()
    files = sorted(p for p in args.dir.iterdir() if p.is_file())
    if not files:
        print(f"no files in {args.dir}", file=sys.stderr)
        return 1
    readers: dict[str, Callable[[list[Path]], tuple[int, int]]] = {
        "kiln iter_records": read_kiln,
        "warcio ArchiveIterator": read_warcio,
        "fastwarc raw (floor)": read_fastwarc,
    }
    counts = {name: fn(files)[0] for name, fn in readers.items()}  # also warms caches and imports
    if len(set(counts.values())) != 1:
        print(f"record counts differ: {counts}", file=sys.stderr)
        return 1
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"{len(files)} files, {total_mb:.2f} MB on disk, {counts['kiln iter_records']} records per pass")
    print(f"python {platform.python_version()}, {platform.machine()}, {args.rounds} rounds x {args.repeat} passes")
    best = dict.fromkeys(readers, float("inf"))
    for _ in range(args.rounds):
        for name, fn in readers.items():
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                fn(files)
            best[name] = min(best[name], time.perf_counter() - t0)
    n = counts["kiln iter_records"] * args.repeat
    print(f"\n{'reader':<24} {'records':>8} {'seconds':>8} {'records/s':>10} {'MB/s (disk)':>12}")
    for name, seconds in best.items():
        rate = n / seconds
        print(f"{name:<24} {n:>8,} {seconds:>8.3f} {rate:>10,.0f} {total_mb * args.repeat / seconds:>12.1f}")
    ratio = best["warcio ArchiveIterator"] / best["kiln iter_records"]
    print(f"\nkiln / warcio speed ratio: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
