"""End-to-end tests for resuming training: `kill -9`, SIGTERM and SIGINT in the middle of a real `kiln train`
process, then `--resume`, reproduce the uninterrupted run step for step; checkpoint retention (keep_last, the best,
stale temporaries); clear errors for corrupt or mismatched checkpoints; divergence; overrides on resume."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import sentence_corpus
from kiln.cli import main
from kiln.train.checkpoint import CheckpointError, load_checkpoint
from kiln.train.schedule import lr_multiplier
from kiln.train.state import (
    ResumeError,
    find_resume_dir,
    latest_checkpoint,
    prune,
    read_trainer_state,
    step_dirs,
)
from kiln.train.trainer import TrainingDiverged, resume_config, train

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(_corpus(), encoding="utf-8")
    return path


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


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, list[dict]]:
    """The uninterrupted SLOW run that every interrupted-and-resumed one must reproduce."""
    out_dir = tmp_path_factory.mktemp("reference") / "run"
    metrics = _train(out_dir, corpus, *SLOW)
    assert [m["step"] for m in metrics] == list(range(1, N + 1))
    assert [m["step"] for m in metrics if "val_loss" in m] == [10, 20, 30, 40, 48]
    return out_dir, metrics


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, list[dict]]:
    """A finished 4-step TINY run with checkpoints at steps 2 and 4; tests corrupt copies of it."""
    out_dir = tmp_path_factory.mktemp("small") / "run"
    metrics = _train(out_dir, corpus, *TINY, "max_steps=4", "eval_interval=2", "warmup_steps=1", "lr=1e-2")
    assert _ckpt_steps(out_dir) == [2, 4]
    return out_dir, metrics


@pytest.fixture
def run_copy(small_run: tuple[Path, list[dict]], tmp_path: Path) -> Path:
    out_dir = tmp_path / "run"
    shutil.copytree(small_run[0], out_dir)
    return out_dir


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


# ------------------------------------------------------------------------------------------------ 4. corruption


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # in the tensor bytes, after the header: the file still parses
    path.write_bytes(bytes(data))


def _drop_recorded_sha(ckpt: Path) -> None:
    """As a checkpoint written before the optimizer checksum was recorded."""
    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    del state["optimizer_sha256"]
    (ckpt / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")


def _no_sha_then_truncate(path: Path) -> None:
    _drop_recorded_sha(path.parent)
    _truncate(path)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_truncate, "is corrupt or truncated: its sha256 differs"),
        (_flip_bit, "is corrupt or truncated: its sha256 differs"),
        (_no_sha_then_truncate, "is corrupt or truncated ("),
        (Path.unlink, "is missing"),
    ],
    ids=["truncated", "bit-flipped", "truncated-no-checksum", "missing"],
)
def test_damaged_optimizer_state_is_a_resume_error_naming_the_file(
    run_copy: Path, small_run: tuple[Path, list[dict]], damage, expected: str
) -> None:
    target = _ckpt(run_copy, 4) / "optimizer.safetensors"
    damage(target)
    with pytest.raises(ResumeError, match=r"optimizer\.safetensors") as exc:
        train(resume_config(run_copy), log=lambda _: None, resume=run_copy)
    assert str(target) in str(exc.value)
    assert expected in str(exc.value)
    message = _cli_error(["train", "--resume", str(run_copy)])
    assert str(target) in message and expected in message
    assert _metrics(run_copy) == small_run[1]  # a failed resume leaves the run as it was


def test_bit_flipped_optimizer_state_via_a_real_process_exits_2_without_traceback(run_copy: Path) -> None:
    target = _ckpt(run_copy, 4) / "optimizer.safetensors"
    _flip_bit(target)
    proc = subprocess.run(
        [sys.executable, "-m", "kiln.cli", "train", "--resume", str(run_copy)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kiln train: error: ")
    assert f"{target} is corrupt or truncated" in proc.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"step": 4, "loader": ', "trainer_state.json is corrupt"),
        ("", "trainer_state.json is corrupt"),
        (b"\xff\xfe{}", "trainer_state.json is corrupt"),
        ('{"step": 4}', "trainer_state.json is missing loader, rng, optimizers, train_config, world_size"),
    ],
    ids=["cut-short", "empty", "not-utf8", "missing-keys"],
)
def test_malformed_trainer_state_is_a_resume_error_naming_the_file(
    run_copy: Path, content: str | bytes, expected: str
) -> None:
    target = _ckpt(run_copy, 4) / "trainer_state.json"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    with pytest.raises(ResumeError, match=expected) as exc:
        resume_config(run_copy)
    assert str(target) in str(exc.value)
    message = _cli_error(["train", "--resume", str(run_copy)])
    assert str(target) in message


def test_no_complete_checkpoint_is_a_resume_error(run_copy: Path) -> None:
    for step in (2, 4):
        (_ckpt(run_copy, step) / "trainer_state.json").unlink()
    with pytest.raises(ResumeError, match="has no complete checkpoint"):
        find_resume_dir(run_copy)
    assert str(run_copy) in _cli_error(["train", "--resume", str(run_copy)])
    # one checkpoint directory named directly, without its trainer_state.json
    assert str(_ckpt(run_copy, 4)) in _cli_error(["train", "--resume", str(_ckpt(run_copy, 4))])
    assert "does not exist" in _cli_error(["train", "--resume", str(run_copy / "nope")])


def test_a_checkpoint_without_trainer_state_is_skipped_for_the_previous_one(
    run_copy: Path, small_run: tuple[Path, list[dict]]
) -> None:
    (_ckpt(run_copy, 4) / "trainer_state.json").unlink()
    assert find_resume_dir(run_copy) == _ckpt(run_copy, 2)
    rc, out, err = _resume(run_copy)
    assert rc == 0, err
    assert "resuming at step 2" in out
    _assert_same_run(_metrics(run_copy), small_run[1])
    assert _ckpt_steps(run_copy) == [2, 4]  # step 4 rewritten in place, complete again
    _assert_same_weights(_ckpt(run_copy, 4), _ckpt(small_run[0], 4))


@pytest.mark.parametrize("damage", [_truncate, _flip_bit], ids=["truncated", "bit-flipped"])
def test_damaged_model_weights_are_a_checkpoint_error_naming_the_file(
    run_copy: Path, small_run: tuple[Path, list[dict]], damage
) -> None:
    ckpt = _ckpt(run_copy, 4)
    target = ckpt / "model.safetensors"
    damage(target)
    for where in (ckpt, run_copy):  # the checkpoint itself, and the run directory (its best checkpoint is step 4)
        with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt or truncated") as exc:
            load_checkpoint(where)
        assert str(target) in str(exc.value)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        train(resume_config(run_copy), log=lambda _: None, resume=run_copy)
    assert str(target) in _cli_error(["train", "--resume", str(run_copy)])
    assert _metrics(run_copy) == small_run[1]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.n_layer=3", "its model config differs from this run's"),
        ("model.n_embd=64", "its model config differs from this run's"),
        ("batch_size=4", "batch_size is 8 in the saved state but 4 here"),
    ],
)
def test_resuming_with_a_different_shape_is_an_error(
    run_copy: Path, small_run: tuple[Path, list[dict]], override: str, expected: str
) -> None:
    with pytest.raises(ResumeError, match=expected) as exc:
        train(resume_config(run_copy, [override]), log=lambda _: None, resume=run_copy)
    assert str(_ckpt(run_copy, 4)) in str(exc.value)
    assert expected in _cli_error(["train", "--resume", str(run_copy), override])
    assert _metrics(run_copy) == small_run[1]
    assert _ckpt_steps(run_copy) == [2, 4]


def test_resume_with_a_config_file_is_an_error(run_copy: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text("max_steps = 10\n", encoding="utf-8")
    assert "give only key=value overrides" in _cli_error(["train", str(config), "--resume", str(run_copy)])


# ------------------------------------------------------------------------------------------------ 5. divergence


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["lr=1e4"], "loss spiked to .* at step 2, over 4.0x its running average"),
        (["lr=1e6", "loss_spike_factor=0"], "loss became nan at step 2"),
    ],
    ids=["spike", "nan"],
)
def test_divergence_stops_with_exit_1_and_keeps_the_last_good_checkpoint(
    corpus: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    out_dir = tmp_path / "run"
    argv = ["train", *TINY, "warmup_steps=0", "schedule=constant", "grad_clip=0", "checkpoint_interval=1"]
    argv += ["eval_interval=5", "max_steps=10", *args, f"data={corpus}", f"out_dir={out_dir}"]
    rc, _, err = _cli(argv)
    assert rc == 1, err
    assert "Traceback" not in err
    message = next(line for line in err.splitlines() if "kiln train: " in line)
    assert message[message.index("kiln train: ") :].startswith("kiln train: loss ")
    assert f"The last good checkpoint is in {out_dir}" in message

    # stopped before the bad update: step 1 is the last line, the last checkpoint, and nothing after it exists
    assert [m["step"] for m in _metrics(out_dir)] == [1]
    assert _ckpt_steps(out_dir) == [1]
    assert _hidden(out_dir) == []
    ckpt = _ckpt(out_dir, 1)
    state = read_trainer_state(ckpt)
    assert state["step"] == 1 and state["reason"] == "interval"
    assert math.isfinite(state["loss_ema"])
    model, _, meta = load_checkpoint(ckpt)  # intact: checksums match, every tensor present
    assert meta["step"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())

    # the checkpoint resumes, and the run diverges again at the same step (the failure is reproducible)
    with pytest.raises(TrainingDiverged, match=expected):
        train(resume_config(out_dir), log=lambda _: None, resume=out_dir)
    assert _ckpt_steps(out_dir) == [1]
    assert [m["step"] for m in _metrics(out_dir)] == [1]


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
