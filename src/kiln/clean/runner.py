"""`kiln clean`: raw WARC/HTML (or JSONL/Parquet text) -> training text in Parquet, with the reason for every drop.

The default pipeline is FineWeb's order: URL filter -> text extraction -> language ID -> Gopher repetition ->
Gopher quality -> C4 -> FineWeb rules -> exact dedup -> MinHash dedup -> PII redaction. The config's
`[[steps]]` tables can reorder, remove or tune steps (see `kiln.clean.config`):

    [[steps]]
    name = "gopher_quality"
    min_doc_words = 30

Two phases, because dedup needs to see every document while everything else works on one input shard:
1. per input file, on an executor (`kiln.clean.executors`: this process, local processes or Ray tasks), the
   steps before the first dedup step; survivors go to `.stage1/<shard>.parquet` with a done-marker
   `.stage1/<shard>.json` holding the step counts. A rerun skips shards that have their marker, so a run
   resumes, and can even be resumed with another executor: they all run the same `_run_phase1`;
2. in input order, in this process, the dedup steps and everything after them (the first copy of a text
   wins, across shards and workers), writing `<out>/<shard>.parquet`.
`stats.json` has, per step, documents in / kept / dropped by reason and seconds (phase-1 steps summed over
shards); `dropped_samples.json` holds a few dropped documents per step and reason for the data explorer;
`kiln-clean.toml` is the resolved config, written before any work, so `kiln clean <out>/kiln-clean.toml`
repeats or resumes the run.

Reruns are keyed by content, not by file name. A shard's key is its input's identity (absolute path, size and
mtime in nanoseconds: what make and rsync trust; hashing the content would read every WARC again on every
rerun, the work a resume exists to avoid) and a fingerprint of the phase-1 steps as resolved (names, options,
FineWeb's defaults, the classes that implement them). A marker with another key is stale: it is deleted
before its shard is redone (so a run killed halfway can never pair it with the new shard). A rerun into an
output directory of an earlier run also removes, before any work, every final shard (`NNNNN-name.parquet`,
rewritten by phase 2 anyway) and the `.stage1` files of shards that are not in this run (inputs left out, or
renumbered), so `kiln tokenize <out>` never reads the output of other inputs or of another pipeline. Only
files that `kiln clean` names so are removed, and only where `.stage1` shows that it wrote the directory.

Every input is accounted for in `stats.json` (`inputs`: path, documents read, problem): a file that is not
what its name says, cannot be parsed, or yields no document has its problem there and in the printed summary;
when no input yields a document at all, the run is an error (ValueError naming every file and its problem).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kiln.clean import registry
from kiln.clean.config import CleanConfig
from kiln.clean.documents_io import InputError, read_documents, read_parquet_documents, write_parquet
from kiln.clean.executors import make_executor
from kiln.clean.extract import reuse_workers
from kiln.clean.pipeline import Document, Step, StepStats, run_steps
from kiln.clean.registry import StepSpec, StepTarget
from kiln.clean.summary import STATS_FILE, CleanSummary
from kiln.config import load_config
from kiln.stage import write_resolved_config
from kiln.utils.checks import require
from kiln.utils.io import atomic_write_text

__all__ = ["CleanConfig", "CleanSummary", "clean", "find_inputs", "load_steps_toml", "run"]

STAGE1_DIR = ".stage1"  # hidden, so `kiln tokenize <out>` reads only the final shards
SAMPLES_FILE = "dropped_samples.json"  # not .jsonl: `kiln tokenize <out>` must not read it as a corpus
INPUT_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".jsonl", ".jsonl.gz", ".parquet")
_SHARD_FILE = re.compile(r"\d{5}-.*\.(parquet|json)")  # what `_shard_name` names (and its .json marker)
_TEMP_FILE = re.compile(r"\.\d{5}-.*\.tmp")  # a write that a killed run left unfinished


def run(config: CleanConfig) -> CleanSummary:
    """Run (or resume) the pipeline; the summary is also written to <out_dir>/stats.json."""
    config.validate()
    t0 = time.perf_counter()
    files = find_inputs(config.inputs)
    for spec in config.steps:  # fail fast on a bad option, before anything is written or any worker starts
        registry.build_step(spec)
    out = Path(config.out_dir)
    stage1 = out / STAGE1_DIR
    _remove_stale(out, stage1, {_shard_name(i, p) for i, p in enumerate(files)})
    stage1.mkdir(parents=True, exist_ok=True)
    write_resolved_config(config, out, "clean")

    phase1, phase2 = registry.split_phases(config.steps)
    shards = _phase1(config, files, phase1, stage1)
    _require_some_input(shards)
    kept_per_shard, steps2 = _phase2([r["shard"] for r in shards], phase2, stage1, out)

    merged = [_sum_over_shards(spec["name"], [r["stats"][k] for r in shards]) for k, spec in enumerate(phase1)]
    merged += [s.stats for s in steps2]
    summary = CleanSummary(
        inputs=[{**r["input"], "path": str(p)} for r, p in zip(shards, files, strict=True)],
        documents_out=sum(kept_per_shard.values()),
        steps=[{"name": s.name, **s.to_dict()} for s in merged],
        seconds=time.perf_counter() - t0,
        out_dir=config.out_dir,
    )
    summary.write(out / STATS_FILE)
    samples = [d for r in shards for d in r["samples"]] + [vars(d) for s in steps2 for d in s.samples]
    atomic_write_text(out / SAMPLES_FILE, json.dumps(samples, ensure_ascii=False, indent=0))
    return summary


def find_inputs(inputs: list[str]) -> list[Path]:
    """The input files, in order: files as given, directories searched (sorted) for the input suffixes."""
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


def _remove_stale(out: Path, stage1: Path, current: set[str]) -> None:
    """Before a rerun into `out`: every final shard (phase 2 rewrites them all), and the `.stage1` files of
    shards not in this run. Only in a directory that `kiln clean` wrote (it has `.stage1`), only its names."""
    if not stage1.is_dir():
        return
    for path in out.iterdir():
        if path.is_file() and ((path.suffix == ".parquet" and _SHARD_FILE.fullmatch(path.name))
                               or _TEMP_FILE.fullmatch(path.name)):  # fmt: skip
            path.unlink()
    for path in stage1.iterdir():
        stale = _SHARD_FILE.fullmatch(path.name) and path.name.rsplit(".", 1)[0] not in current
        if path.is_file() and (stale or _TEMP_FILE.fullmatch(path.name)):
            path.unlink()


def input_key(path: Path, step_fingerprint: str) -> dict[str, Any]:
    """What a shard's done-marker must match to be reused: the input's identity and the phase-1 steps."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "steps": step_fingerprint}


def steps_fingerprint(specs: list[StepSpec], targets: list[StepTarget]) -> str:
    """A hash of the phase-1 steps as they will run: names, options with FineWeb's defaults, classes."""
    resolved = [
        [spec["name"], {**registry.STEP_DEFAULTS.get(spec["name"], {}), **spec}, list(target)]
        for spec, target in zip(specs, targets, strict=True)
    ]
    text = json.dumps(resolved, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _phase1(config: CleanConfig, files: list[Path], specs: list[StepSpec], stage1: Path) -> list[dict[str, Any]]:
    """Each shard's phase-1 result, in input order (not completion order: the same files on every run): read
    from its done-marker if that has this run's key, else computed on the config's executor."""
    from kiln.utils.progress import progress_bar

    # Step classes are looked up here, where the registry may hold steps that a freshly started worker would
    # not know.
    targets = registry.resolve_steps(specs)
    fingerprint = steps_fingerprint(specs, targets)
    keys = [input_key(path, fingerprint) for path in files]
    results: dict[int, dict[str, Any]] = {}
    for i, path in enumerate(files):
        marker = stage1 / f"{_shard_name(i, path)}.json"
        if not marker.exists():
            continue
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            done = None
        if isinstance(done, dict) and done.get("key") == keys[i] and "input" in done:
            results[i] = done
        else:  # another input, another pipeline or an older kiln: redo it, and never trust this marker again
            marker.unlink()
    todo = [i for i in range(len(files)) if i not in results]
    # Paths go out absolute: a job may run where the cwd is not ours (a Ray worker).
    jobs = [(i, files[i].resolve(), specs, stage1.resolve(), targets, keys[i]) for i in todo]
    executor = make_executor(config.executor, config.workers, len(jobs), config.ray_address, reuse_workers)
    # The executor (a Ray connection, say) is up before the progress bar appears.
    with (
        executor,
        progress_bar(total=len(files), initial=len(results), unit="shard", desc="clean", disable=config.quiet) as bar,
    ):
        for k, result in executor.map(_run_phase1, jobs):
            results[todo[k]] = result
            bar.update(1)
    return [results[i] for i in range(len(files))]


def _run_phase1(
    index: int,
    path: Path,
    specs: list[StepSpec],
    stage1: Path,
    targets: list[StepTarget],
    key: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One shard's phase 1, wherever the executor runs it: its survivors to `.stage1/<shard>.parquet`, then its
    done-marker (atomically, last: a shard with a marker is complete) with `key`, what a rerun must match."""
    name = _shard_name(index, path)
    steps = [registry.build_step(s, t) for s, t in zip(specs, targets, strict=True)]
    account: dict[str, Any] = {"path": str(path), "documents": 0, "problem": None}
    n = write_parquet(stage1 / f"{name}.parquet", run_steps(_read_accounted(path, account), steps))
    result = {
        "shard": name,
        "key": key,
        "input": account,
        "kept": n,
        "stats": [s.stats.to_dict() | {"name": s.name} for s in steps],
        "samples": [vars(d) for s in steps for d in s.samples],
    }
    atomic_write_text(stage1 / f"{name}.json", json.dumps(result))
    return result


def _read_accounted(path: Path, account: dict[str, Any]) -> Iterator[Document]:
    """The documents of one input, counted into `account`; what goes wrong reading it (a file that is not what
    its name says, a torn gzip, malformed WARC records) becomes its `problem` instead of an exception: the
    documents read before it still go on, and so does the run."""
    from kiln.acquire.warc import IngestStats

    stats = IngestStats()
    try:
        for doc in read_documents(path, stats):
            account["documents"] += 1
            yield doc
    except InputError as e:
        account["problem"] = str(e).removeprefix(f"{path}: ")
    except (OSError, EOFError, zlib.error, UnicodeError) as e:
        account["problem"] = f"cannot read it ({type(e).__name__}: {e})"
    first = f" (first: {stats.problems[0]})" if stats.problems else ""
    if account["documents"] == 0 and not path.name.lower().endswith(INPUT_SUFFIXES):
        account["problem"] = f"not a WARC/ARC, JSONL or Parquet file ({', '.join(INPUT_SUFFIXES)}){first}"
    elif account["problem"] is None and stats.skipped_malformed:
        account["problem"] = f"{stats.skipped_malformed} malformed record(s) skipped{first}"
    elif account["problem"] is None and account["documents"] == 0:
        account["problem"] = "no documents (no HTML response records, rows or lines with text)"


def _require_some_input(shards: list[dict[str, Any]]) -> None:
    """A run none of whose inputs yields a document is an error naming each file and what is wrong with it."""
    if any(r["input"]["documents"] for r in shards):
        return
    listed = "; ".join(f"{r['input']['path']}: {r['input']['problem']}" for r in shards[:5])
    more = f" (and {len(shards) - 5} more)" if len(shards) > 5 else ""
    raise ValueError(f"no input yielded a document: {listed}{more}")


def _phase2(names: list[str], specs: list[StepSpec], stage1: Path, out: Path) -> tuple[dict[str, int], list[Step]]:
    """One pass over the stage-1 shards in input order through the remaining steps, writing `<out>/<shard>.parquet`
    for every shard (empty if nothing of it survived); documents kept per shard, and the steps (for stats)."""
    steps = [registry.build_step(s) for s in specs]

    def tagged() -> Iterator[Document]:
        for name in names:
            for doc in read_parquet_documents(stage1 / f"{name}.parquet"):
                doc.metadata["_shard"] = name  # ids may repeat across inputs; the tag travels with the document
                yield doc

    kept_per_shard: dict[str, int] = dict.fromkeys(names, 0)
    current: str | None = None
    buffer: list[Document] = []
    for doc in run_steps(tagged(), steps):
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
    return kept_per_shard, steps


def _sum_over_shards(name: str, per_shard: list[dict[str, Any]]) -> StepStats:
    """One phase-1 step's stats summed over the shards' done-markers."""
    total = StepStats(name)
    for d in per_shard:
        total.add(StepStats(d["name"], seen=d["in"], kept=d["kept"], dropped=Counter(d["dropped_by_reason"]),
                            seconds=d["seconds"]))  # fmt: skip
    return total


# --- kept while kiln.cli calls them; the stage contract is `run(CleanConfig)` and `load_config` -------------


def clean(cfg: CleanConfig, progress: bool = True) -> dict[str, Any]:
    """`run`, returning the content of stats.json."""
    return run(dataclasses.replace(cfg, quiet=cfg.quiet or not progress)).to_json()


def load_steps_toml(path: str | Path) -> list[StepSpec]:
    """The [[steps]] of a config file (whose inputs, if any, are ignored)."""
    return load_config(CleanConfig, path, base=CleanConfig(inputs=["(given on the command line)"])).steps
