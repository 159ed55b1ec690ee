"""`kiln clean --executor ray`: phase 1 as Ray tasks gives the same files as the local process pool.

One local Ray instance (2 CPUs) serves the whole module: starting Ray costs seconds, so clean() reuses the one
already initialised (and leaves it running). Its workers import the stand-in steps from tests/clean_steps.py,
found through the PYTHONPATH in kiln.clean.runner.worker_runtime_env (pytest puts tests/ on the driver's sys.path).
Only the last test starts a Ray of clean()'s own, in a subprocess, as `kiln clean --executor ray` does.
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
import pytest

from helpers import run_cli
from kiln.clean import runner as clean_module
from kiln.clean.runner import CleanConfig, clean

STEPS = clean_steps.STEPS
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env=clean_module.worker_runtime_env())  # fmt: skip
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clean_module, "STEPS", clean_steps.REGISTRY)


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
    """The run's files, byte for byte, except that timings are taken out of stats.json and the markers."""
    files: dict[str, Any] = _files(out)
    for name in list(files):
        if name == "stats.json" or (name.endswith(".json") and name.startswith(clean_module.STAGE1_DIR)):
            files[name] = _without_seconds(json.loads(files[name]))
    return files


def test_ray_executor_writes_what_the_local_one_writes(ray_cluster: Any, corpus: list[str], tmp_path: Path) -> None:
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    stats_local = clean(CleanConfig(inputs=corpus, out_dir=str(local), workers=2, steps=STEPS), progress=False)
    stats_ray = clean(CleanConfig(inputs=corpus, out_dir=str(on_ray), steps=STEPS, executor="ray"), progress=False)

    expected = _comparable(local)
    assert sorted(n for n in expected if "/" not in n) == [
        "00000-a.parquet", "00001-b.parquet", "00002-c.parquet", "00003-d.parquet", "dropped_samples.json",
        "stats.json",
    ]  # fmt: skip
    assert _comparable(on_ray) == expected  # shards, stage-1 shards and markers, samples: the same bytes
    assert _without_seconds(stats_ray) == _without_seconds(stats_local)
    by_name = {s["name"]: s for s in stats_ray["steps"]}
    assert by_name["short"]["dropped_by_reason"] == {"too_short": 4}
    assert by_name["seen"]["dropped_by_reason"] == {"duplicate": 4}  # two of them across shards after upper-casing
    assert stats_ray["documents_out"] == 4
    assert ray_cluster.is_initialized()  # the caller's Ray is left running


def test_ray_resume_skips_finished_shards_and_redoes_one_without_marker(
    ray_cluster: Any, corpus: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = CleanConfig(inputs=corpus, out_dir=str(out), steps=STEPS, executor="ray")
    first = clean(cfg, progress=False)
    before = _comparable(out)
    stage1 = out / clean_module.STAGE1_DIR
    marker = stage1 / "00001-b.json"
    marker.unlink()  # as if the run had died while shard b was in progress
    finished = [p for p in sorted(stage1.iterdir()) if not p.name.startswith("00001-b")]
    mtimes = [p.stat().st_mtime_ns for p in finished]
    redone = stage1 / "00001-b.parquet"
    redone_mtime = redone.stat().st_mtime_ns

    second = clean(cfg, progress=False)
    assert _comparable(out) == before
    assert _without_seconds(second["steps"]) == _without_seconds(first["steps"])
    assert marker.exists()
    assert [p.stat().st_mtime_ns for p in finished] == mtimes  # finished shards were not redone
    assert redone.stat().st_mtime_ns != redone_mtime

    # And a run started under Ray resumes under the local executor with nothing left to do.
    third = clean(CleanConfig(inputs=corpus, out_dir=str(out), workers=1, steps=STEPS), progress=False)
    assert _without_seconds(third["steps"]) == _without_seconds(first["steps"])
    assert [p.stat().st_mtime_ns for p in finished] == mtimes


def test_a_failing_shard_fails_the_run(ray_cluster: Any, corpus: list[str], tmp_path: Path) -> None:
    steps = [{"name": "boom", "trigger": "another long text here"}, *STEPS]
    with pytest.raises(RuntimeError, match="boom in"):
        clean(CleanConfig(inputs=corpus, out_dir=str(tmp_path / "o"), steps=steps, executor="ray"), progress=False)
    assert ray_cluster.is_initialized()


def test_cli_flags(ray_cluster: Any, corpus: list[str], tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text("".join(f'[[steps]]\nname = "{s["name"]}"\n' for s in STEPS))
    rc, stdout, _ = run_cli(["clean", *corpus, "--out", str(tmp_path / "o"), "--config", str(config),
                             "--executor", "ray", "--quiet"])  # fmt: skip
    assert rc == 0 and "4 documents kept" in stdout
    with pytest.raises(SystemExit):
        run_cli(["clean", *corpus, "--out", str(tmp_path / "p"), "--executor", "dask"])


@pytest.mark.parametrize("address", ["http://head:8265", "head", "ray://head", "", "auto:6379x"])
def test_bad_ray_address_is_refused_before_anything_runs(address: str, corpus: list[str], tmp_path: Path) -> None:
    cfg = CleanConfig(inputs=corpus, out_dir=str(tmp_path / "o"), steps=STEPS, executor="ray", ray_address=address)
    with pytest.raises(ValueError, match="ray_address must be 'auto', 'host:port'"):
        clean(cfg, progress=False)
    assert not (tmp_path / "o").exists()


def test_executor_options_are_checked(corpus: list[str]) -> None:
    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        CleanConfig(inputs=corpus, steps=STEPS, executor="dask").validate()
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
        clean(cfg, progress=False)
    config = tmp_path / "pipeline.toml"
    config.write_text('[[steps]]\nname = "short"\n')
    argv = ["clean", *corpus, "--out", str(tmp_path / "p"), "--config", str(config), "--executor", "ray",
            "--ray-address", "auto"]  # fmt: skip
    assert run_cli(argv)[::2] == (2, "kiln clean: error: cannot connect to the Ray cluster at 'auto': "
                                     "Could not find any running Ray instance.\n")  # fmt: skip

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'kiln\[ray\]'"):
        clean(cfg, progress=False)
    rc, _, err = run_cli(argv)
    assert rc == 2 and err == "kiln clean: error: executor 'ray' needs Ray: pip install 'kiln[ray]'\n"


_OWN_RAY = """
import sys
sys.path.insert(0, sys.argv[1])  # only the driver's sys.path has tests/: workers get it from clean()'s runtime_env
import ray, clean_steps
from kiln.clean import runner as m
m.STEPS = clean_steps.REGISTRY
stats = m.clean(m.CleanConfig(inputs=sys.argv[3:], out_dir=sys.argv[2], workers=2, steps=clean_steps.STEPS,
                              executor="ray"), progress=False)
assert not ray.is_initialized(), "clean() started Ray, so it must shut it down"
print(stats["documents_out"])
"""


@pytest.mark.slow
def test_clean_starts_and_stops_its_own_ray(corpus: list[str], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "own"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-c", _OWN_RAY, str(TESTS), str(out), *corpus],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "4"
    local = tmp_path / "local"
    clean(CleanConfig(inputs=corpus, out_dir=str(local), workers=1, steps=STEPS), progress=False)
    assert _comparable(out) == _comparable(local)
