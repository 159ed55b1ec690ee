"""`kiln clean --executor ray`: phase 1 as Ray tasks gives the same files as the local process pool.

One local Ray instance (2 CPUs) serves the whole module: starting Ray costs seconds, so `run` reuses the one
already initialised (and leaves it running). Its workers import the stand-in steps from tests/clean/clean_steps.py,
found through the PYTHONPATH in kiln.clean.executors.worker_runtime_env (pytest puts that folder on the driver's
sys.path); one test runs the real default pipeline instead. Only the last test starts a Ray of `run`'s own, in a
subprocess, as `kiln clean --executor ray` does.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clean_steps
import pyarrow.parquet as pq
import pytest

import kiln
from helpers import run_cli
from kiln.clean import CleanConfig, CleanSummary, registry, run
from kiln.clean.executors import worker_runtime_env
from kiln.clean.runner import STAGE1_DIR
from kiln.stage import config_file_name

STEPS = clean_steps.STEPS
BUILT_IN_STEPS = registry.STEPS  # taken before the fixture below swaps in the stand-ins
TESTS = Path(__file__).parent
BUNDLED_WARC = Path(__file__).resolve().parents[2] / "src" / "kiln" / "assets" / "quickstart" / "warc"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env=worker_runtime_env())  # fmt: skip
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True)
def stand_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "STEPS", clean_steps.REGISTRY)


def clean(**fields: Any) -> CleanSummary:
    """One run, without a progress bar."""
    return run(CleanConfig(quiet=True, **fields))


def _write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "url": f"http://x/{i}"}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> list[str]:
    """Four shards with duplicates across them; the last one loses everything (an empty output shard)."""
    src = tmp_path / "src"
    src.mkdir()
    files = [
        _write_jsonl(src / "a.jsonl", ["a long enough text one", "tiny", "shared text across shards", "x"]),
        _write_jsonl(src / "b.jsonl", ["shared text across shards", "another long text here", "short"]),
        _write_jsonl(src / "c.jsonl", ["a long enough text one", "third shard's text", "Shared Text Across Shards"]),
        _write_jsonl(src / "d.jsonl", ["another long text here", "nope"]),
    ]  # fmt: skip
    return [str(p) for p in files]


def _files(out: Path) -> dict[str, bytes]:
    """Every file a run leaves, by relative path (stats.json separately: it holds timings)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _without_seconds(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def _comparable(out: Path) -> dict[str, Any]:
    """The run's files, byte for byte, except that timings are taken out of stats.json and the markers, and
    the resolved config (which says which executor ran, and where the output went) is left out."""
    files: dict[str, Any] = _files(out)
    del files[config_file_name("clean")]
    for name in list(files):
        if name == "stats.json" or (name.endswith(".json") and name.startswith(STAGE1_DIR)):
            files[name] = _without_seconds(json.loads(files[name]))
    return files


def test_ray_executor_writes_what_the_local_one_writes(ray_cluster: Any, corpus: list[str], tmp_path: Path) -> None:
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    summary_local = clean(inputs=corpus, out_dir=str(local), workers=2, steps=STEPS)
    summary_ray = clean(inputs=corpus, out_dir=str(on_ray), steps=STEPS, executor="ray")

    expected = _comparable(local)
    assert sorted(n for n in _files(local) if "/" not in n) == [
        "00000-a.parquet", "00001-b.parquet", "00002-c.parquet", "00003-d.parquet", "dropped_samples.json",
        "kiln-clean.toml", "stats.json",
    ]  # fmt: skip
    assert _comparable(on_ray) == expected  # shards, stage-1 shards and markers, samples: the same bytes
    assert _without_seconds(summary_ray.to_json()) == _without_seconds(summary_local.to_json())
    by_name = {s["name"]: s for s in summary_ray.steps}
    assert by_name["short"]["dropped_by_reason"] == {"too_short": 4}
    assert by_name["seen"]["dropped_by_reason"] == {"duplicate": 4}  # two of them across shards after upper-casing
    assert summary_ray.documents_out == 4
    assert ray_cluster.is_initialized()  # the caller's Ray is left running


def test_real_default_pipeline_on_ray_writes_what_the_local_one_writes(
    ray_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every real step (extraction in its worker process, fastText language ID, Gopher, C4, FineWeb, exact and
    MinHash dedup across shards, PII) on the bundled Common Crawl and wget WARC files: Ray tasks give the same
    Parquet shards, markers, samples and stats as local processes."""
    monkeypatch.setattr(registry, "STEPS", BUILT_IN_STEPS)  # the real steps, not this module's stand-ins
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    summary_local = clean(inputs=[str(BUNDLED_WARC)], out_dir=str(local), workers=2)
    summary_ray = clean(inputs=[str(BUNDLED_WARC)], out_dir=str(on_ray), executor="ray")

    assert [s["name"] for s in summary_ray.steps] == registry.DEFAULT_STEPS
    assert _comparable(on_ray) == _comparable(local)  # every output and stage-1 shard, marker and sample
    assert _without_seconds(json.loads((on_ray / "stats.json").read_text())) == _without_seconds(
        json.loads((local / "stats.json").read_text())
    )
    assert _without_seconds(summary_ray.to_json()) == _without_seconds(summary_local.to_json())
    # The run did real work: pages were extracted, some dropped by language and quality, one copy of a page
    # found in two shards (phase 2 sees across the Ray tasks' outputs), and the rest written.
    by_name = {s["name"]: s for s in summary_ray.steps}
    assert by_name["extract"]["in"] == by_name["url_filter"]["kept"] > 40
    assert by_name["langid"]["dropped"] > 0 and by_name["gopher_quality"]["dropped"] > 0
    assert by_name["exact_dedup"]["dropped_by_reason"].get("exact_duplicate", 0) > 0
    rows = [r for p in sorted(on_ray.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(rows) == summary_ray.documents_out > 10
    assert all(r["language"] == "en" and r["text"].strip() for r in rows)
    assert ray_cluster.is_initialized()


def test_ray_resume_skips_finished_shards_and_redoes_one_without_marker(
    ray_cluster: Any, corpus: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = CleanConfig(inputs=corpus, out_dir=str(out), steps=STEPS, executor="ray", quiet=True)
    first = run(cfg)
    before = _comparable(out)
    stage1 = out / STAGE1_DIR
    marker = stage1 / "00001-b.json"
    marker.unlink()  # as if the run had died while shard b was in progress
    finished = [p for p in sorted(stage1.iterdir()) if not p.name.startswith("00001-b")]
    mtimes = [p.stat().st_mtime_ns for p in finished]
    redone = stage1 / "00001-b.parquet"
    redone_mtime = redone.stat().st_mtime_ns

    second = run(cfg)
    assert _comparable(out) == before
    assert _without_seconds(second.steps) == _without_seconds(first.steps)
    assert marker.exists()
    assert [p.stat().st_mtime_ns for p in finished] == mtimes  # finished shards were not redone
    assert redone.stat().st_mtime_ns != redone_mtime

    # And a run started under Ray resumes under the local executor with nothing left to do.
    third = clean(inputs=corpus, out_dir=str(out), workers=1, steps=STEPS)
    assert _without_seconds(third.steps) == _without_seconds(first.steps)
    assert [p.stat().st_mtime_ns for p in finished] == mtimes


def test_a_failing_shard_fails_the_run(ray_cluster: Any, corpus: list[str], tmp_path: Path) -> None:
    steps = [{"name": "boom", "trigger": "another long text here"}, *STEPS]
    with pytest.raises(RuntimeError, match="boom in"):
        clean(inputs=corpus, out_dir=str(tmp_path / "o"), steps=steps, executor="ray")
    assert ray_cluster.is_initialized()


def test_a_failure_submits_no_more_tasks_and_cancels_none(ray_cluster: Any, tmp_path: Path) -> None:
    """Tasks go out two per CPU at a time (4 on the fixture's 2 CPUs) and after a failure no more are submitted:
    of 40 jobs, about the first window's run (jobs 1-3 when Ray starts them in order; the bound leaves room for
    another order), and those run to their end on the caller's Ray: nothing is ray.cancel'led, which can abort
    the driver if a task finishes meanwhile (see kiln.clean.executors). Submitting all 40 at once, 39 would run."""
    import time

    from kiln.clean.executors import RayExecutor

    with pytest.raises(RuntimeError, match="job 0 fails"), RayExecutor(None, 2) as ex:
        for _ in ex.map(clean_steps.marked_job, [(str(tmp_path), i) for i in range(40)]):
            pass
    time.sleep(1.5)  # the first window's last jobs finish on the caller's Ray
    ran = sorted(int(f.name.split("_")[1]) for f in tmp_path.glob("job_*"))
    assert 1 <= len(ran) <= 8, ran


def test_cli_flags(ray_cluster: Any, corpus: list[str], tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text("".join(f'[[steps]]\nname = "{s["name"]}"\n' for s in STEPS))
    rc, stdout, _ = run_cli(["clean", *corpus, "--out", str(tmp_path / "o"), "--config", str(config),
                             "--executor", "ray", "--quiet"])  # fmt: skip
    assert rc == 0 and "4 documents kept" in stdout
    rc, _, err = run_cli(["clean", *corpus, "--out", str(tmp_path / "p"), "--executor", "dask"])
    assert rc == 2 and "executor" in err and "'dask'" in err and "Traceback" not in err


@pytest.mark.parametrize("address", ["http://head:8265", "head", "ray://head", "", "auto:6379x"])
def test_bad_ray_address_is_refused_before_anything_runs(address: str, corpus: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ray_address must be 'auto', 'host:port'"):
        clean(inputs=corpus, out_dir=str(tmp_path / "o"), steps=STEPS, executor="ray", ray_address=address)
    assert not (tmp_path / "o").exists()


def test_executor_options_are_checked(corpus: list[str]) -> None:
    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        CleanConfig(inputs=corpus, steps=STEPS, executor="dask").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs executor 'ray'"):
        CleanConfig(inputs=corpus, steps=STEPS, ray_address="auto").validate()
    for good in ("auto", "10.0.0.5:6379", "head-node.local:6379", "ray://head:10001", "[::1]:6379"):
        CleanConfig(inputs=corpus, steps=STEPS, executor="ray", ray_address=good).validate()


def test_unreachable_cluster_and_missing_ray_give_clear_errors(
    monkeypatch: pytest.MonkeyPatch, corpus: list[str], tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")

    def refuse(**_: Any) -> None:
        raise ConnectionError("Could not find any running Ray instance.")

    # A real unreachable address takes Ray ~30 s to give up on; what matters is how the failure reads.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    cfg = CleanConfig(inputs=corpus, out_dir=str(tmp_path / "o"), steps=STEPS, executor="ray", ray_address="auto")
    with pytest.raises(ConnectionError, match="cannot connect to the Ray cluster at 'auto': Could not find"):
        run(cfg)
    config = tmp_path / "pipeline.toml"
    config.write_text('[[steps]]\nname = "short"\n')
    argv = ["clean", *corpus, "--out", str(tmp_path / "p"), "--config", str(config), "--executor", "ray",
            "--ray-address", "auto"]  # fmt: skip
    assert run_cli(argv)[::2] == (2, "kiln clean: error: cannot connect to the Ray cluster at 'auto': "
                                     "Could not find any running Ray instance.\n")  # fmt: skip

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'kiln\[ray\]'"):
        run(cfg)
    rc, _, err = run_cli(argv)
    assert rc == 2 and err == "kiln clean: error: executor 'ray' needs Ray: pip install 'kiln[ray]'\n"


_OWN_RAY = """
import sys
# Only the driver's sys.path has the kiln under test and tests/clean: workers get them from run()'s runtime_env.
sys.path[:0] = sys.argv[1:3]
import ray, clean_steps
from kiln.clean import CleanConfig, registry, run
registry.STEPS = clean_steps.REGISTRY
summary = run(CleanConfig(inputs=sys.argv[4:], out_dir=sys.argv[3], workers=2, steps=clean_steps.STEPS,
                          executor="ray", quiet=True))
assert not ray.is_initialized(), "run() started Ray, so it must shut it down"
print(summary.documents_out)
"""


@pytest.mark.slow
def test_clean_starts_and_stops_its_own_ray(corpus: list[str], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "own"
    src = Path(kiln.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-c", _OWN_RAY, str(src), str(TESTS), str(out), *corpus],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "4"
    local = tmp_path / "local"
    clean(inputs=corpus, out_dir=str(local), workers=1, steps=STEPS)
    assert _comparable(out) == _comparable(local)
