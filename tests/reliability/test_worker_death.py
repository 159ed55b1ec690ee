"""`kiln tokenize`'s worker processes die with their parent: after a real `kill -9` of the command mid-run, no
worker keeps running or writing parts, and a rerun resumes to exactly the shards of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiln.tokenize import TokenizeConfig, run_tokenize
from kiln.train.data import bundled_text

TIMEOUT = 60
KILL_AFTER = 6  # parts done before the kill (of ~100)


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (read from /proc, no helper library)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that a container may lack counts as dead: it runs no code)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _outputs(out: Path) -> dict[str, int]:
    files = [*out.glob("*.bin"), *(out / "parts").glob("*.json")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files if p.exists()}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_tokenize_workers_die_with_a_killed_parent_and_a_rerun_matches(tmp_path: Path) -> None:
    corpus = tmp_path / "big.txt"
    corpus.write_text(bundled_text() * 3, encoding="utf-8")
    args = dict(inputs=[str(corpus)], tokenizer="byte", part_mb=0.03, quiet=True)
    clean_out = tmp_path / "clean"
    clean = run_tokenize(TokenizeConfig(**args, out_dir=str(clean_out), workers=1))
    assert clean.parts > 50

    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "kiln", "tokenize", str(corpus), "--tokenizer", "byte", "--out", str(out)]
    argv += ["--workers", "2", "--part-mb", "0.03", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + TIMEOUT
    workers: list[int] = []
    try:
        while len(list((out / "parts").glob("*.json"))) < KILL_AFTER:
            if proc.poll() is not None:
                pytest.fail(f"kiln tokenize exited ({proc.returncode}) before {KILL_AFTER} parts were done")
            if time.monotonic() > deadline:
                pytest.fail(f"kiln tokenize did not finish {KILL_AFTER} parts in {TIMEOUT} s")
            time.sleep(0.002)
        workers = _children(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text(errors="replace")
    assert len(workers) >= 2, f"expected the pool's worker processes, found {workers}"

    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [w for w in workers if _alive(w)]
    for w in survivors:  # leave no stray process behind the test, whatever its outcome
        os.kill(w, signal.SIGKILL)
    assert not survivors, f"worker processes outlived their killed parent: {survivors}"

    written = _outputs(out)
    time.sleep(1.0)
    assert _outputs(out) == written, "parts were still being written after the parent was killed"
    done = len(list((out / "parts").glob("*.json")))
    assert done < clean.parts, "the job was not killed in the middle: make the corpus bigger"

    resumed = run_tokenize(TokenizeConfig(**args, out_dir=str(out), workers=2))
    assert resumed.parts_resumed == done
    shards = {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}
    assert shards == {p.name: p.read_bytes() for p in sorted(clean_out.glob("*.bin"))}
    assert (resumed.train_tokens, resumed.val_tokens) == (clean.train_tokens, clean.val_tokens)
    assert not [p.name for p in [*out.glob(".*.tmp"), *(out / "parts").glob(".*.tmp")]]  # no killed write's leftovers


CHILD = """
import os, sys, time
from kiln.utils.lifeline import exit_if_orphaned
parent = os.getpid()
pid = os.fork()
if pid == 0:  # the worker: no parent-death signal, only the check it makes between parts
    while True:
        exit_if_orphaned(parent)
        time.sleep(0.02)
print(pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a worker")
def test_the_getppid_fallback_stops_a_worker_whose_parent_was_killed(tmp_path: Path) -> None:
    """Without the parent-death signal (other OSes, or a parent that died before the prctl), the check made
    before each part ends an orphaned worker."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        assert _alive(worker)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the orphaned worker kept running")
