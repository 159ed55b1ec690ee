"""Shared by the resume tests: the training settings they run, and helpers that drive `kiln train` in-process
or as a real subprocess and compare runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import sentence_corpus
from kiln.cli import main
from kiln.train.state import (
    step_dirs,
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TIMEOUT = 120  # seconds: a guard against a hung subprocess, far above the few seconds each one takes

# Common to every run here: fp32 on one CPU thread (bit-reproducible), a metrics line every step, no MFU probe.
COMMON = [
    "preset=tiny",
    "device=cpu",
    "precision=fp32",
    "threads=1",
    "log_interval=1",
    "eval_batches=2",
    "sample_tokens=0",
    "peak_tflops=1",
]
# Big enough (~25 ms a step on one thread) that a watcher polling metrics.jsonl every few ms can stop the run well
# before its end, small enough that the whole run takes about a second.
N, CKPT, EVAL, STOP_AT = 48, 5, 10, 12
SLOW = [
    *COMMON,
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=4",
    "model.block_size=64",
    "batch_size=16",
    "lr=1e-2",
    "warmup_steps=5",
    f"eval_interval={EVAL}",
    f"checkpoint_interval={CKPT}",
    f"max_steps={N}",
]
# A few milliseconds a step, for everything that does not need to race a live process.
TINY = [*COMMON, "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=32", "batch_size=8"]
COMPARED = ("train_loss", "lr", "grad_norm", "tokens")


def _corpus(n_sentences: int = 1500, seed: int = 0) -> str:
    return sentence_corpus(n_sentences, seed)


# ------------------------------------------------------------------------------------------------ helpers


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """`kiln <argv>` in this process, with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _train(out_dir: Path, data: Path, *args: str) -> list[dict]:
    """A complete in-process `kiln train` run; its metrics."""
    rc, _, err = _cli(["train", *args, f"data={data}", f"out_dir={out_dir}"])
    assert rc == 0, err
    return _metrics(out_dir)


def _resume(out_dir: Path, *overrides: str) -> tuple[int, str, str]:
    return _cli(["train", "--resume", str(out_dir), *overrides])


def _metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _ckpt_steps(out_dir: Path) -> list[int]:
    return [step for step, _ in step_dirs(out_dir)]


def _ckpt(out_dir: Path, step: int) -> Path:
    return out_dir / "checkpoints" / f"step_{step:07d}"


def _hidden(out_dir: Path) -> list[str]:
    """Temporaries (`.step_*.tmp-<pid>`, `.step_*.old-<pid>`) left in the checkpoints directory."""
    return sorted(p.name for p in (out_dir / "checkpoints").glob(".*"))


def _last_step(metrics: Path) -> int:
    """The step of the last complete line of a metrics.jsonl being written by another process (0 if none)."""
    try:
        text = metrics.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    lines = [line for line in text.split("\n")[:-1] if line.strip()]  # a line without its newline is unfinished
    return json.loads(lines[-1])["step"] if lines else 0


def _spawn(argv: list[str], logs: Path) -> subprocess.Popen:
    """`python -m kiln.cli <argv>` as a real process, its output going to files (a full pipe would block it)."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout.txt", "wb") as out, open(logs / "stderr.txt", "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "kiln.cli", *argv], stdout=out, stderr=err, env=ENV)


def _output(logs: Path) -> str:
    return "\n".join(
        (logs / name).read_text(encoding="utf-8", errors="replace") for name in ("stdout.txt", "stderr.txt")
    )


def _wait_for_step(proc: subprocess.Popen, out_dir: Path, step: int, logs: Path) -> None:
    """Poll metrics.jsonl until the run has logged `step` (killing the process if the wait fails)."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while _last_step(out_dir / "metrics.jsonl") < step:
            if proc.poll() is not None:
                pytest.fail(f"kiln train exited ({proc.returncode}) before step {step}:\n{_output(logs)[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"kiln train did not reach step {step} in {TIMEOUT} s")
            time.sleep(0.002)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _assert_same_run(got: list[dict], ref: list[dict], extra_eval: int | None = None) -> None:
    """Every step once, in order, with the uninterrupted run's losses, lr, grad norm and val loss (bit for bit, as
    logged). `extra_eval`: a step a signal stopped the run on, which evaluates there (a run's last step always
    does)."""
    assert [m["step"] for m in got] == [m["step"] for m in ref]
    for g, r in zip(got, ref, strict=True):
        step = r["step"]
        assert {k: g[k] for k in COMPARED} == {k: r[k] for k in COMPARED}, f"step {step}"
        if "val_loss" in r:
            assert (g["val_loss"], g["val_bpb"]) == (r["val_loss"], r["val_bpb"]), f"step {step}"
        else:
            assert "val_loss" not in g or step == extra_eval, f"unexpected evaluation at step {step}"


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def _cli_error(argv: list[str]) -> str:
    """Run `kiln <argv>` in process, expecting a usage error: exit code 2, one `kiln train: error:` line, no
    traceback. Returns the message."""
    rc, _, err = _cli(argv)
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "kiln train: error:" in line]
    assert len(lines) == 1, err
    return lines[0]
