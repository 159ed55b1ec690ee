"""Resuming from a bad place fails clearly: corrupt or mismatched checkpoints are errors naming the file (exit 2,
no traceback), and a diverging run stops with exit 1 keeping the last good checkpoint."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from resume_support import (
    ENV,
    TIMEOUT,
    TINY,
    _assert_same_run,
    _assert_same_weights,
    _ckpt,
    _ckpt_steps,
    _cli,
    _cli_error,
    _corpus,
    _hidden,
    _metrics,
    _resume,
    _train,
)

from kiln.model.checkpoint import CheckpointError, load_checkpoint
from kiln.train.state import (
    ResumeError,
    find_resume_dir,
    read_trainer_state,
)
from kiln.train.trainer import TrainingDiverged, resume_config, train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(_corpus(), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ fixtures


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
