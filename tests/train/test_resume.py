"""End-to-end tests for resuming training: `kill -9`, SIGTERM and SIGINT in the middle of a real `kiln train`
process, then `--resume`, reproduce the uninterrupted run step for step; checkpoint retention (keep_last, the best,
stale temporaries); overrides on resume; a fresh run refusing a used out_dir."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from resume_support import (
    CKPT,
    ENV,
    SLOW,
    STOP_AT,
    TIMEOUT,
    TINY,
    N,
    _assert_same_run,
    _assert_same_weights,
    _ckpt,
    _ckpt_steps,
    _cli,
    _corpus,
    _hidden,
    _last_step,
    _metrics,
    _output,
    _resume,
    _spawn,
    _train,
    _wait_for_step,
)

from kiln.model.checkpoint import load_checkpoint
from kiln.train.schedule import lr_multiplier
from kiln.train.state import (
    find_resume_dir,
    latest_checkpoint,
    prune,
    read_trainer_state,
)
from kiln.train.trainer import resume_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(_corpus(), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, list[dict]]:
    """The uninterrupted SLOW run that every interrupted-and-resumed one must reproduce."""
    out_dir = tmp_path_factory.mktemp("reference") / "run"
    metrics = _train(out_dir, corpus, *SLOW)
    assert [m["step"] for m in metrics] == list(range(1, N + 1))
    assert [m["step"] for m in metrics if "val_loss" in m] == [10, 20, 30, 40, 48]
    return out_dir, metrics


# ------------------------------------------------------------------------------------------------ 1. kill -9


def test_sigkill_mid_run_then_resume_reproduces_the_uninterrupted_run(
    reference: tuple[Path, list[dict]], corpus: Path, tmp_path: Path
) -> None:
    """The acceptance test: a real `kiln train` process killed with SIGKILL (no chance to save anything) after
    it has passed a checkpoint, then `kiln train --resume DIR` as another process, logs exactly the steps and
    values of the run that was never interrupted, and ends with bit-identical weights."""
    ref_dir, ref = reference
    out_dir, logs = tmp_path / "run", tmp_path / "logs"
    proc = _spawn(["train", *SLOW, f"data={corpus}", f"out_dir={out_dir}"], logs)
    _wait_for_step(proc, out_dir, STOP_AT, logs)
    proc.kill()
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL

    killed_at = _last_step(out_dir / "metrics.jsonl")
    resume_from = _ckpt_steps(out_dir)[-1]
    assert STOP_AT <= killed_at < N, "the run was not killed in the middle"
    assert 10 <= resume_from <= killed_at
    assert resume_from % CKPT == 0  # no signal handler ran: only interval checkpoints exist
    assert find_resume_dir(out_dir) == _ckpt(out_dir, resume_from)

    done = subprocess.run(
        [sys.executable, "-m", "kiln.cli", "train", "--resume", str(out_dir)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming at step {resume_from}" in done.stdout
    assert f"after {N} steps" in done.stdout

    _assert_same_run(_metrics(out_dir), ref)
    assert _ckpt_steps(out_dir)[-1] == N
    assert read_trainer_state(_ckpt(out_dir, N))["step"] == N
    _assert_same_weights(_ckpt(out_dir, N), _ckpt(ref_dir, N))
    assert _hidden(out_dir) == []  # a temporary from a kill mid-save would have been cleaned by now


# ------------------------------------------------------------------------------------------------ 2. SIGTERM / SIGINT


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_exits_128_plus_signal_and_resumes_exactly(
    sig: signal.Signals, reference: tuple[Path, list[dict]], corpus: Path, tmp_path: Path
) -> None:
    ref_dir, ref = reference
    out_dir, logs = tmp_path / "run", tmp_path / "logs"
    proc = _spawn(["train", *SLOW, f"data={corpus}", f"out_dir={out_dir}"], logs)
    _wait_for_step(proc, out_dir, STOP_AT, logs)
    proc.send_signal(sig)
    assert proc.wait(timeout=TIMEOUT) == 128 + sig, _output(logs)[-3000:]

    stopped_at = _last_step(out_dir / "metrics.jsonl")
    assert STOP_AT <= stopped_at < N, "the run was not stopped in the middle"
    assert f"stopped by signal at step {stopped_at}; checkpoint saved" in _output(logs)
    # the step it stopped on is checkpointed (finishing that step first), and is what --resume picks
    assert _ckpt_steps(out_dir)[-1] == stopped_at
    state = read_trainer_state(_ckpt(out_dir, stopped_at))
    assert state["step"] == stopped_at
    assert state["reason"] == "signal"
    assert find_resume_dir(out_dir) == _ckpt(out_dir, stopped_at)
    assert _hidden(out_dir) == []

    rc, out, err = _resume(out_dir)
    assert rc == 0, err
    assert f"resuming at step {stopped_at}" in out
    _assert_same_run(_metrics(out_dir), ref, extra_eval=stopped_at)
    _assert_same_weights(_ckpt(out_dir, N), _ckpt(ref_dir, N))


# ------------------------------------------------------------------------------------------------ 3. keep_last


def test_keep_last_keeps_the_newest_and_the_best_and_ignores_stale_temporaries(corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    # A high constant lr makes the validation loss bounce, so the best checkpoint is not one of the newest two.
    args = [*TINY, "lr=0.05", "schedule=constant", "warmup_steps=0", "grad_clip=0", "loss_spike_factor=0"]
    args += ["eval_interval=2", "keep_last=2"]
    metrics = _train(out_dir, corpus, *args, "max_steps=20")
    val = {m["step"]: m["val_loss"] for m in metrics if "val_loss" in m}
    assert sorted(val) == list(range(2, 21, 2))  # a checkpoint at each of these
    best = min(val, key=val.__getitem__)
    assert best < 18, f"the run should have its best validation loss before its last two checkpoints: {val}"
    assert read_trainer_state(_ckpt(out_dir, 20))["best_step"] == best
    assert _ckpt_steps(out_dir) == sorted({best, 18, 20})

    # load_checkpoint / resolve_checkpoint on the run directory give the best checkpoint, not the latest
    _, _, meta = load_checkpoint(out_dir)
    assert meta["step"] == best
    assert round(meta["val_loss"], 6) == val[best]

    # A kill in the middle of a save leaves only a hidden temporary: never resumed from, cleaned by the next save.
    stale = out_dir / "checkpoints" / f".step_0000022.tmp-{os.getpid() + 1}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\x00" * 100)
    (stale / "trainer_state.json").write_text('{"step": 22', encoding="utf-8")
    assert latest_checkpoint(out_dir) == find_resume_dir(out_dir) == _ckpt(out_dir, 20)
    assert resume_config(out_dir).max_steps == 20

    rc, _, err = _resume(out_dir, "max_steps=22")
    assert rc == 0, err
    assert _hidden(out_dir) == []
    state = read_trainer_state(_ckpt(out_dir, 22))
    assert state["step"] == 22
    assert _ckpt_steps(out_dir) == sorted({state["best_step"], 20, 22})
    assert [m["step"] for m in _metrics(out_dir)] == list(range(1, 23))


def test_prune_deletes_beyond_keep_last_except_best(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4, 5):
        (root / f"step_{step:07d}").mkdir(parents=True)
        (root / f"step_{step:07d}" / "trainer_state.json").write_text("{}", encoding="utf-8")
    mine = root / f".step_0000006.tmp-{os.getpid()}"  # this process's save in progress: not stale
    mine.mkdir()
    prune(tmp_path, keep_last=2, best_step=2)
    assert _ckpt_steps(tmp_path) == [2, 4, 5]
    assert _hidden(tmp_path) == [mine.name]
    prune(tmp_path, keep_last=1, best_step=None)
    assert _ckpt_steps(tmp_path) == [5]


def test_prune_cleans_a_stale_temporary_whose_pid_starts_with_ours(tmp_path: Path) -> None:
    stale = tmp_path / "checkpoints" / f".step_0000003.tmp-{os.getpid()}0"  # another (dead) process: pid * 10
    stale.mkdir(parents=True)
    prune(tmp_path, keep_last=2, best_step=None)
    assert not stale.exists()


# ------------------------------------------------------------------------------------------------ 6. overrides


def test_resume_with_larger_max_steps_continues_like_a_longer_run(corpus: Path, tmp_path: Path) -> None:
    args = [*TINY, "schedule=constant", "warmup_steps=2", "lr=1e-2", "eval_interval=2"]
    longer = _train(tmp_path / "longer", corpus, *args, "max_steps=10")
    out_dir = tmp_path / "run"
    first = _train(out_dir, corpus, *args, "max_steps=6")

    rc, out, err = _resume(out_dir)  # a finished run: nothing to do
    assert rc == 0, err
    assert "after 6 steps" in out
    assert _metrics(out_dir) == first
    assert _ckpt_steps(out_dir)[-1] == 6

    rc, out, err = _resume(out_dir, "max_steps=10")
    assert rc == 0, err
    assert "resuming at step 6" in out and "after 10 steps" in out
    _assert_same_run(_metrics(out_dir), longer)
    assert _metrics(out_dir)[:6] == first
    assert _ckpt_steps(out_dir)[-1] == 10
    assert read_trainer_state(_ckpt(out_dir, 10))["train_config"]["max_steps"] == 10
    assert resume_config(out_dir).max_steps == 10
    _assert_same_weights(_ckpt(out_dir, 10), _ckpt(tmp_path / "longer", 10))


def test_resume_with_larger_max_steps_stretches_the_cosine_schedule(corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    lr, warmup = 1e-2, 2
    first = _train(out_dir, corpus, *TINY, f"lr={lr}", f"warmup_steps={warmup}", "eval_interval=3", "max_steps=6")
    rc, _, err = _resume(out_dir, "max_steps=12")
    assert rc == 0, err
    metrics = _metrics(out_dir)
    assert [m["step"] for m in metrics] == list(range(1, 13))
    assert metrics[:6] == first
    for m in metrics[6:]:
        s = m["step"] - 1  # the lr logged with step n is the one used for the n-th update
        expected = lr * lr_multiplier("cosine", s, (s - warmup) / (12 - warmup), warmup=warmup, min_ratio=0.1)
        assert m["lr"] == pytest.approx(expected, rel=1e-12)
        assert math.isfinite(m["train_loss"])
    assert metrics[-1]["lr"] < metrics[6]["lr"]
    assert metrics[-1]["train_loss"] < first[-1]["train_loss"]


def test_resume_applies_an_lr_override(corpus: Path, tmp_path: Path) -> None:
    """The saved optimizer state carries its param-group hyperparameters; the resumed run's config must win."""
    out_dir = tmp_path / "run"
    _train(out_dir, corpus, *TINY, "schedule=constant", "warmup_steps=0", "lr=1e-2", "eval_interval=2", "max_steps=2")
    rc, _, err = _resume(out_dir, "max_steps=4", "lr=1e-3")
    assert rc == 0, err
    assert [m["lr"] for m in _metrics(out_dir)] == [1e-2, 1e-2, 1e-3, 1e-3]


def test_a_fresh_run_in_a_used_out_dir_is_refused_unless_overwrite(corpus: Path, tmp_path: Path) -> None:
    """A new run must not mix with an earlier run's checkpoints: it is refused (pointing at --resume and
    overwrite=true), and overwrite=true starts over, leaving nothing of the old run behind."""
    out_dir = tmp_path / "run"
    args = [*TINY, "eval_interval=2", "warmup_steps=0"]
    _train(out_dir, corpus, *args, "max_steps=8")
    before = _metrics(out_dir)
    rc, _, err = _cli(["train", *args, "max_steps=4", "lr=0.02", f"data={corpus}", f"out_dir={out_dir}"])
    assert rc == 2
    assert "--resume" in err and "overwrite=true" in err and "step 8" in err
    assert _metrics(out_dir) == before  # refused before touching anything
    _train(out_dir, corpus, *args, "max_steps=4", "lr=0.02", "overwrite=true")
    assert _ckpt_steps(out_dir) == [2, 4]
    assert [m["step"] for m in _metrics(out_dir)] == [1, 2, 3, 4]
    assert read_trainer_state(find_resume_dir(out_dir))["train_config"]["max_steps"] == 4
    assert load_checkpoint(out_dir)[2]["train"]["max_steps"] == 4
