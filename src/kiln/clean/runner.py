"""`kiln clean`: raw WARC/HTML (or JSONL/Parquet text) -> training text in Parquet, with the reason for every drop.

The default pipeline is FineWeb's order: URL filter -> text extraction -> language ID -> Gopher repetition ->
Gopher quality -> C4 -> FineWeb rules -> exact dedup -> MinHash dedup -> PII redaction. A TOML file can
reorder, remove or tune steps:

    [[steps]]
    name = "gopher_quality"
    min_doc_words = 30

Two phases, because dedup needs to see every document while everything else works on one input shard:
1. per input file (in parallel worker processes, resumable: a shard with a done-marker is skipped), the steps
   before the first dedup step; survivors go to `.stage1/<shard>.parquet`;
2. in input order, in one process, the dedup steps and everything after them (the first copy of a text
   wins, across shards and workers), writing `<out>/<shard>.parquet`.
Phase 1 runs in a local process pool (`executor="local"`) or as one Ray task per shard (`executor="ray"`, for
clusters); both write the same shards and markers, so a run can even be resumed with the other executor.
`stats.json` has, per step, documents in / kept / dropped by reason and seconds (phase-1 steps summed over
shards); `dropped_samples.json` holds a few dropped documents per step and reason for the data explorer.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.clean.documents_io import read_documents, read_parquet_documents, write_parquet
from kiln.clean.extract import reuse_workers
from kiln.clean.pipeline import Document, Step, StepStats, run_steps
from kiln.utils.checks import require
from kiln.utils.io import atomic_write_text

# name -> (module, class, runs in phase 2). Imported lazily: a pipeline without a step never loads its model.
STEPS: dict[str, tuple[str, str, bool]] = {
    "url_filter": ("kiln.clean.url_filter", "URLFilter", False),
    "extract": ("kiln.clean.extract", "Extractor", False),
    "langid": ("kiln.clean.langid", "LanguageFilter", False),
    "gopher_repetition": ("kiln.clean.filters", "GopherRepetitionFilter", False),
    "gopher_quality": ("kiln.clean.filters", "GopherQualityFilter", False),
    "c4": ("kiln.clean.filters", "C4QualityFilter", False),
    "fineweb": ("kiln.clean.filters", "FineWebQualityFilter", False),
    "exact_dedup": ("kiln.clean.dedup", "ExactDedup", True),
    "minhash_dedup": ("kiln.clean.dedup", "MinHashDedup", True),
    "pii": ("kiln.clean.pii", "PIIRedactor", False),
}
DEFAULT_STEPS = list(STEPS)
# Where FineWeb's pipeline sets a step differently from the step's own (datatrove's) defaults; options given
# in a pipeline file still win. FineWeb keeps C4's lines that do not end in punctuation.
STEP_DEFAULTS: dict[str, dict[str, Any]] = {"c4": {"filter_no_terminal_punct": False}}
STAGE1_DIR = ".stage1"  # hidden, so `kiln tokenize <out>` reads only the final shards
SAMPLES_FILE = "dropped_samples.json"  # not .jsonl: `kiln tokenize <out>` must not read it as a corpus
INPUT_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".jsonl", ".jsonl.gz", ".parquet")
EXECUTORS = ("local", "ray")
# What ray.init(address=...) accepts: "auto" (RAY_ADDRESS or the cluster running on this node), a head's GCS
# "host:port" (usually 6379) or a Ray Client "ray://host:port" (usually 10001). Checked up front because a
# dashboard URL ("http://head:8265", the Jobs API address) is the usual mistake and Ray's own error is obscure.
_RAY_ADDRESS = re.compile(r"auto|(ray://)?([\w.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}")


@dataclass
class CleanConfig:
    inputs: list[str] = field(default_factory=list)
    out_dir: str = "clean"
    workers: int = 0  # phase-1 processes (0 = one per CPU)
    steps: list[dict[str, Any]] = field(default_factory=lambda: [{"name": n} for n in DEFAULT_STEPS])
    executor: str = "local"  # phase 1 in "local" processes or as "ray" tasks (same output)
    ray_address: str | None = None  # None: start a local Ray with `workers` CPUs; else a cluster to connect to

    def validate(self) -> CleanConfig:
        require(bool(self.inputs), "give at least one input file or directory")
        require(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        require(self.executor in EXECUTORS, f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.ray_address is not None:
            require(self.executor == "ray", f"ray_address {self.ray_address!r} needs executor 'ray'")
            require(isinstance(self.ray_address, str) and _RAY_ADDRESS.fullmatch(self.ray_address) is not None,
                    f"ray_address must be 'auto', 'host:port' (a head node's GCS port, usually 6379) or "
                    f"'ray://host:port' (Ray Client, usually 10001), got {self.ray_address!r}")  # fmt: skip
        for spec in self.steps:
            require(isinstance(spec, dict) and spec.get("name") in STEPS,
                    f"unknown step {spec!r}; known: {', '.join(STEPS)}")  # fmt: skip
        return self


def load_steps_toml(path: str | Path) -> list[dict[str, Any]]:
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"pipeline config not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e})") from None
    steps = data.get("steps")
    require(isinstance(steps, list) and all(isinstance(s, dict) for s in steps),
            f"{path}: expected [[steps]] tables, each with a name")  # fmt: skip
    return steps


def resolve_steps(specs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(module, class) of each step, looked up in the driver: a worker that imports kiln afresh (Ray, a spawned
    process) sees only the built-in STEPS, not steps registered at run time (as the tests do)."""
    return [STEPS[s["name"]][:2] for s in specs]


def build_step(spec: dict[str, Any], target: tuple[str, str] | None = None) -> Step:
    """The step named by `spec`, from `target` (module, class) when given, else from the STEPS registry."""
    module, cls = target or STEPS[spec["name"]][:2]
    kwargs = {**STEP_DEFAULTS.get(spec["name"], {}), **{k: v for k, v in spec.items() if k != "name"}}
    try:
        return getattr(importlib.import_module(module), cls)(**kwargs)
    except TypeError as e:
        raise ValueError(f"step {spec['name']}: bad option ({e})") from None


def split_phases(specs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Steps before the first dedup step run per shard; the rest run once over everything, in order."""
    for i, spec in enumerate(specs):
        if STEPS[spec["name"]][2]:
            return specs[:i], specs[i:]
    return specs, []


def find_inputs(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(INPUT_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    require(bool(files), f"no WARC, JSONL or Parquet files in {', '.join(inputs)}")
    return files


def _shard_name(index: int, path: Path) -> str:
    stem = path.name.split(".")[0]
    return f"{index:05d}-{stem}"


def _run_phase1(
    index: int, path: Path, specs: list[dict[str, Any]], stage1: Path, targets: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    name = _shard_name(index, path)
    marker = stage1 / f"{name}.json"
    if marker.exists():
        return json.loads(marker.read_text(encoding="utf-8"))
    steps = [build_step(s, t) for s, t in zip(specs, targets or resolve_steps(specs), strict=True)]
    n = write_parquet(stage1 / f"{name}.parquet", run_steps(read_documents(path), steps))
    result = {
        "shard": name,
        "kept": n,
        "stats": [s.stats.to_dict() | {"name": s.name} for s in steps],
        "samples": [vars(d) for s in steps for d in s.samples],
    }
    atomic_write_text(marker, json.dumps(result))
    return result


def _reuse_workers_for_life() -> None:
    """Pool process initializer: its shards share one extraction worker (see `reuse_workers`), a daemon child
    that multiprocessing ends when the pool process exits."""
    reuse_workers().__enter__()


def _stage1_docs(stage1: Path, names: list[str]) -> Iterator[tuple[str, Document]]:
    for name in names:
        for doc in read_parquet_documents(stage1 / f"{name}.parquet"):
            yield name, doc


def clean(cfg: CleanConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns the stats also written to <out_dir>/stats.json."""
    cfg.validate()
    t0 = time.perf_counter()
    files = find_inputs(cfg.inputs)
    out = Path(cfg.out_dir)
    stage1 = out / STAGE1_DIR
    stage1.mkdir(parents=True, exist_ok=True)
    phase1, phase2 = split_phases(cfg.steps)
    for spec in cfg.steps:  # fail fast on a bad option, before any worker starts
        build_step(spec)

    from tqdm import tqdm

    targets = resolve_steps(phase1)
    workers = min(cfg.workers or os.cpu_count() or 1, len(files))
    results: dict[int, dict[str, Any]] = {}
    # Ray is connected to before the progress bar appears, and let go of before phase 2.
    ray_session = _ray_session(cfg) if cfg.executor == "ray" else contextlib.nullcontext()
    with ray_session as ray, tqdm(total=len(files), unit="shard", desc="clean", disable=not progress) as bar:
        if ray is not None:
            results = _phase1_on_ray(ray, files, phase1, targets, stage1, bar.update)
        elif workers <= 1:
            with reuse_workers():  # one extraction worker for all shards, not one per shard
                for i, path in enumerate(files):
                    results[i] = _run_phase1(i, path, phase1, stage1, targets)
                    bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_reuse_workers_for_life) as pool:
                futures = {pool.submit(_run_phase1, i, p, phase1, stage1, targets): i for i, p in enumerate(files)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(1)

    # Phase 2: one pass over the stage-1 shards in input order.
    names = [results[i]["shard"] for i in range(len(files))]
    steps2 = [build_step(s) for s in phase2]
    current: str | None = None
    buffer: list[Document] = []
    tagged = _stage1_docs(stage1, names)

    def untag() -> Iterator[Document]:
        for name, doc in tagged:
            doc.metadata["_shard"] = name  # ids may repeat across inputs; the tag travels with the document
            yield doc

    kept_per_shard: dict[str, int] = dict.fromkeys(names, 0)
    for doc in run_steps(untag(), steps2):
        name = doc.metadata.pop("_shard")
        if current is not None and name != current:
            write_parquet(out / f"{current}.parquet", buffer)
            buffer = []
        current = name
        buffer.append(doc)
        kept_per_shard[name] += 1
    if current is not None:
        write_parquet(out / f"{current}.parquet", buffer)
    for name, n in kept_per_shard.items():
        if n == 0:
            write_parquet(out / f"{name}.parquet", [])

    # Stats: phase-1 steps summed over shards, then phase-2 steps.
    merged: list[StepStats] = []
    ordered = [results[i] for i in range(len(files))]  # input order, not completion order: same files every run
    for k, spec in enumerate(phase1):
        total = StepStats(spec["name"])
        for r in ordered:
            s = r["stats"][k]
            total.add(_stats_from_dict(s))
        merged.append(total)
    merged += [s.stats for s in steps2]
    stats = {
        "inputs": [str(p) for p in files],
        "documents_out": sum(kept_per_shard.values()),
        "steps": [{"name": s.name, **s.to_dict()} for s in merged],
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=1))
    samples = [d for r in ordered for d in r["samples"]] + [vars(d) for s in steps2 for d in s.samples]
    atomic_write_text(out / SAMPLES_FILE, json.dumps(samples, ensure_ascii=False, indent=0))
    return stats


def _phase1_on_ray(
    ray: Any,
    files: list[Path],
    specs: list[dict[str, Any]],
    targets: list[tuple[str, str]],
    stage1: Path,
    advance: Callable[[int], object],
) -> dict[int, dict[str, Any]]:
    """Phase 1 as one Ray task (1 CPU) per shard; `advance(1)` per finished shard. Same `_run_phase1`, same files.

    Paths go out absolute (a worker's cwd is not the driver's), and shards with a done-marker are read here
    instead of being scheduled. On a cluster the inputs and `out_dir` must be on storage every node sees at the
    same path, and kiln (with the steps' dependencies) must be installed on every node.
    """
    results: dict[int, dict[str, Any]] = {}
    run = ray.remote(num_cpus=1)(_run_phase1)
    pending: dict[Any, int] = {}
    for i, path in enumerate(files):
        marker = stage1 / f"{_shard_name(i, path)}.json"
        if marker.exists():
            results[i] = json.loads(marker.read_text(encoding="utf-8"))
            advance(1)
        else:
            pending[run.remote(i, path.resolve(), specs, stage1.resolve(), targets)] = i
    try:
        while pending:
            # All that are ready, at most every half second: one ray.wait per shard is quadratic in shards.
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                advance(1)
    except BaseException:
        for ref in pending:  # a failed shard (or Ctrl-C) stops the run, as with the local pool
            ray.cancel(ref)
        raise
    return results


@contextlib.contextmanager
def _ray_session(cfg: CleanConfig) -> Iterator[Any]:
    """The `ray` module, initialised; shut down on exit only if initialised here (else it is the caller's)."""
    ray, started = _ray_connect(cfg)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _ray_connect(cfg: CleanConfig) -> tuple[Any, bool]:
    """Ray, initialised; and whether we initialised it (and so must shut it down)."""
    try:
        import ray
    except ImportError:
        raise ImportError("executor 'ray' needs Ray: pip install 'kiln[ray]'", name="ray") from None
    if ray.is_initialized():  # the caller's (a notebook, a test fixture, a Ray job): use it, leave it running
        return ray, False
    if cfg.ray_address is None:
        # address="local": never attach to a cluster found through RAY_ADDRESS or /tmp/ray (pass "auto" for that).
        ray.init(address="local", num_cpus=cfg.workers or os.cpu_count() or 1, include_dashboard=False,
                 runtime_env=worker_runtime_env(), logging_level=logging.WARNING)  # fmt: skip
        return ray, True
    try:
        ray.init(address=cfg.ray_address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, TimeoutError) as e:
        raise ConnectionError(f"cannot connect to the Ray cluster at {cfg.ray_address!r}: {e}") from None
    return ray, True


def worker_runtime_env() -> dict[str, Any]:
    """A runtime_env giving local Ray workers the driver's import path (PYTHONPATH).

    Workers are fresh interpreters that see only installed packages and the driver's cwd; a forked local worker
    would also see a script's directory or `tests/` (where pytest puts it), so steps defined there import the same
    way under Ray. Only for a Ray started here: a cluster's nodes have their own paths.
    """
    paths = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def _stats_from_dict(d: dict[str, Any]) -> StepStats:
    from collections import Counter

    s = StepStats(d["name"], seen=d["in"], kept=d["kept"], seconds=d["seconds"])
    s.dropped = Counter(d["dropped_by_reason"])
    return s
