"""Data-parallel training under torchrun, for real: two CPU processes talking over gloo.

Every run here trains the same tiny model from the same seed on the same windows, so the numbers must agree
with one process holding the whole global batch, up to float reordering (~1e-6):

- DDP and FSDP2 (2 processes x 8 sequences) match 1 process x 16 sequences step by step (train loss, grad
  norm, lr) and at every evaluation (val loss, bits per byte);
- gradient accumulation (1 x 8 x 2 micro-steps; 2 x 4 x 2 with DDP's no_sync or FSDP2's deferred
  reduce-scatter on the first micro-step) matches too;
- an FSDP run's checkpoint is a plain full checkpoint that loads in this single process, with the DDP run's
  weights and optimizer state;
- only rank 0 writes: one metrics.jsonl line per step, one set of checkpoints.

The single-process runs go in-process through the CLI. The four torchrun launches (a few seconds each, mostly
importing torch) start together, in the background, the first time a test needs one, and are shared by the
tests that read them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

import kiln
from kiln.cli import main as kiln_main
from kiln.model.checkpoint import load_checkpoint
from kiln.train.loader import val_batches

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"
)

BLOCK = 64
STEPS = 8
EVAL_EVERY = 4
GLOBAL_BATCH = 16  # sequences per optimizer step in every run below
STEP_TOKENS = GLOBAL_BATCH * BLOCK
CORPUS_CHARS = 120_000  # val = the last 10%: ~187 windows of 65 chars, far more than the 2 x 16 evaluated

COMMON = [
    "preset=tiny",
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=4",
    f"model.block_size={BLOCK}",
    f"max_steps={STEPS}",
    f"eval_interval={EVAL_EVERY}",
    "log_interval=1",
    "eval_batches=2",
    "warmup_steps=2",
    "sample_tokens=0",
    "precision=fp32",
    "threads=1",
    "device=cpu",
    "peak_tflops=1",  # skip the CPU matmul probe (MFU is not under test)
    "seed=1337",
]

LOSS_TOL = 1e-5  # metrics.jsonl rounds losses to 6 decimals
NORM_TOL = 2e-5  # ... and grad norms to 5, so two equal norms can print 1e-5 apart
LAUNCH_TIMEOUT_S = 300  # for all the torchrun launches together (they run at once)


# ------------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 120 KB of the bundled Tiny Shakespeare: varied text, char-tokenized in milliseconds."""
    text = (Path(kiln.__file__).parent / "assets" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(text[:CORPUS_CHARS], encoding="utf-8")
    return path


def _args(corpus: Path, out_dir: Path, *extra: str) -> list[str]:
    return [*COMMON, f"data={corpus}", f"out_dir={out_dir}", *extra]


def _single(corpus: Path, out_dir: Path, *extra: str) -> Path:
    """One process, in this one, through the same CLI path torchrun's workers take."""
    assert kiln_main(["train", *_args(corpus, out_dir, *extra)]) == 0
    return out_dir


# name -> the extra overrides of each 2-process run (all with 16 sequences per optimizer step)
TORCHRUNS: dict[str, list[str]] = {
    "ddp": [f"batch_size={GLOBAL_BATCH // 2}"],
    "fsdp": [f"batch_size={GLOBAL_BATCH // 2}", "parallel=fsdp"],
    # 2 x 4 sequences x 2 micro-steps: the first micro-step under DDP's no_sync / FSDP2 without gradient sync
    "ddp_accum": [f"batch_size={GLOBAL_BATCH // 4}", f"total_batch_tokens={STEP_TOKENS}"],
    "fsdp_accum": [f"batch_size={GLOBAL_BATCH // 4}", f"total_batch_tokens={STEP_TOKENS}", "parallel=fsdp"],
}


@dataclass
class _Launch:
    cmd: list[str]
    out_dir: Path
    log: Path
    proc: subprocess.Popen
    deadline: float  # time.monotonic() by which it must have finished


@pytest.fixture(scope="module")
def launches(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, _Launch]]:
    """Start every torchrun run at once. Most of a launch is three processes importing torch, mostly on one
    core each, so on a small machine they overlap well; each fixture below waits for its own."""
    inherited = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in inherited and not k.startswith("TORCHELASTIC")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    started: dict[str, _Launch] = {}
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    for name, extra in TORCHRUNS.items():
        root = tmp_path_factory.mktemp(name)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += ["-m", "kiln.cli", "train", *_args(corpus, root / "run", *extra)]
        with open(root / "torchrun.log", "wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        started[name] = _Launch(cmd, root / "run", root / "torchrun.log", proc, deadline)
    yield started
    for launch in started.values():  # a test that failed early may leave some running
        if launch.proc.poll() is None:
            launch.proc.terminate()
            try:
                launch.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                launch.proc.kill()
                launch.proc.wait()


def _finished(launches: dict[str, _Launch], name: str) -> Path:
    launch = launches[name]
    try:
        rc = launch.proc.wait(timeout=max(1.0, launch.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        launch.proc.kill()
        launch.proc.wait()
        rc = None
    tail = launch.log.read_text(encoding="utf-8", errors="replace")[-6000:]
    assert rc == 0, f"torchrun {'timed out' if rc is None else f'exited {rc}'}: {' '.join(launch.cmd)}\n{tail}"
    return launch.out_dir


@pytest.fixture(scope="module")
def ddp(launches: dict[str, _Launch]) -> Path:
    return _finished(launches, "ddp")


@pytest.fixture(scope="module")
def fsdp(launches: dict[str, _Launch]) -> Path:
    return _finished(launches, "fsdp")


@pytest.fixture(scope="module")
def ddp_accum(launches: dict[str, _Launch]) -> Path:
    return _finished(launches, "ddp_accum")


@pytest.fixture(scope="module")
def fsdp_accum(launches: dict[str, _Launch]) -> Path:
    return _finished(launches, "fsdp_accum")


@pytest.fixture(scope="module")
def single(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: 1 process x 16 sequences."""
    return _single(corpus, tmp_path_factory.mktemp("single") / "run", f"batch_size={GLOBAL_BATCH}")


@pytest.fixture(scope="module")
def single_accum(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 process x 8 sequences x 2 micro-steps."""
    return _single(
        corpus,
        tmp_path_factory.mktemp("single_accum") / "run",
        f"batch_size={GLOBAL_BATCH // 2}",
        f"total_batch_tokens={STEP_TOKENS}",
    )


# ------------------------------------------------------------------------------------------------ helpers


def _metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _trainer_state(out_dir: Path, step: int = STEPS) -> dict:
    return json.loads((out_dir / "checkpoints" / f"step_{step:07d}" / "trainer_state.json").read_text("utf-8"))


def _table(rows: list[dict]) -> str:
    keys = ("step", "train_loss", "grad_norm", "lr", "val_loss")
    return "\n".join("  ".join(f"{k}={r.get(k)}" for k in keys) for r in rows)


def _assert_same_training(got_dir: Path, ref_dir: Path, *, compare_val: bool = True) -> None:
    """Step by step: the same train loss, grad norm, lr and token count; val loss and bpb at evaluations."""
    got, ref = _metrics(got_dir), _metrics(ref_dir)
    context = f"\n--- got ({got_dir})\n{_table(got)}\n--- reference ({ref_dir})\n{_table(ref)}"
    assert [r["step"] for r in ref] == list(range(1, STEPS + 1)), context
    assert [r["step"] for r in got] == [r["step"] for r in ref], context
    for g, r in zip(got, ref, strict=True):
        step = r["step"]
        assert all(math.isfinite(v[k]) for v in (g, r) for k in ("train_loss", "grad_norm")), context
        assert g["train_loss"] == pytest.approx(r["train_loss"], abs=LOSS_TOL), f"train_loss, step {step}{context}"
        assert g["grad_norm"] == pytest.approx(r["grad_norm"], abs=NORM_TOL), f"grad_norm, step {step}{context}"
        assert g["lr"] == pytest.approx(r["lr"], rel=1e-12, abs=0), f"lr, step {step}{context}"
        assert g["tokens"] == r["tokens"] == step * STEP_TOKENS, f"tokens, step {step}{context}"
        evaluated = step % EVAL_EVERY == 0
        assert ("val_loss" in g) == ("val_loss" in r) == evaluated, f"eval lines, step {step}{context}"
        if compare_val and evaluated:
            assert g["val_loss"] == pytest.approx(r["val_loss"], abs=LOSS_TOL), f"val_loss, step {step}{context}"
            assert g["val_bpb"] == pytest.approx(r["val_bpb"], abs=2 * LOSS_TOL), f"val_bpb, step {step}{context}"
    # The runs learn something, so agreement is not two identical flat lines.
    assert ref[-1]["train_loss"] < ref[0]["train_loss"] - 0.3, context


def _weights(out_dir: Path, step: int = STEPS) -> dict[str, torch.Tensor]:
    model, _, meta = load_checkpoint(out_dir / "checkpoints" / f"step_{step:07d}")
    assert meta["step"] == step
    return model.state_dict()


# ------------------------------------------------------------------------------------------------ 1. DDP / FSDP


@pytest.mark.usefixtures("launches")  # start the torchrun runs before the in-process reference
@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(kind: str, single: Path, request) -> None:
    run = request.getfixturevalue(kind)
    _assert_same_training(run, single)
    state = _trainer_state(run)
    assert state["world_size"] == 2
    assert len(state["rng"]) == 2  # each rank's RNG state, gathered to rank 0
    assert state["loader"]["batch_size"] == GLOBAL_BATCH // 2
    assert state["loader"]["cursor"] == _trainer_state(single)["loader"]["cursor"] == STEPS * GLOBAL_BATCH
    assert state["train_config"]["parallel"] == kind


# ------------------------------------------------------------------------------------------------ 2. accumulation


def test_gradient_accumulation_matches_one_big_batch(single: Path, single_accum: Path) -> None:
    # The val set is eval_batches micro-batches (batch_size x world_size windows each), so it is half the
    # size of the big-batch run's here: compare the training curve only.
    _assert_same_training(single_accum, single, compare_val=False)
    state = _trainer_state(single_accum)
    assert state["loader"]["batch_size"] == GLOBAL_BATCH // 2
    assert state["loader"]["cursor"] == STEPS * GLOBAL_BATCH  # 2 micro-steps per step


@pytest.mark.parametrize("kind", ["ddp_accum", "fsdp_accum"])
def test_two_processes_with_accumulation_match_one_process(
    kind: str, single: Path, single_accum: Path, request
) -> None:
    run = request.getfixturevalue(kind)
    _assert_same_training(run, single, compare_val=False)
    # batch_size x world_size is 8 in both, so the val sets are the same 16 windows.
    _assert_same_training(run, single_accum)
    state = _trainer_state(run)
    assert (state["world_size"], state["loader"]["batch_size"]) == (2, GLOBAL_BATCH // 4)
    assert state["loader"]["cursor"] == STEPS * GLOBAL_BATCH  # 2 ranks x 4 sequences x 2 micro-steps per step


# ------------------------------------------------------------------------------------------------ 3. checkpoints


def test_fsdp_checkpoint_is_a_full_checkpoint_with_the_ddp_weights(fsdp: Path, ddp: Path, single: Path) -> None:
    # The run directory resolves (best by val loss, else latest) and loads in this one, non-distributed process.
    model, tokenizer, meta = load_checkpoint(fsdp)
    assert not dist.is_initialized()
    assert tokenizer is not None and meta["train"]["parallel"] == "fsdp"
    assert meta["step"] == load_checkpoint(ddp)[2]["step"]
    for name, t in model.state_dict().items():
        assert type(t) is torch.Tensor, f"{name} is a {type(t).__name__}, not a plain tensor"

    sharded, replicated, reference = _weights(fsdp), _weights(ddp), _weights(single)
    assert sharded.keys() == replicated.keys() == reference.keys()
    for name in reference:
        # full shapes, not one rank's shard
        assert sharded[name].shape == reference[name].shape, name
        torch.testing.assert_close(
            sharded[name], replicated[name], atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
        )
        torch.testing.assert_close(sharded[name], reference[name], atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    earlier = _weights(single, EVAL_EVERY)
    moved = max(float((reference[n] - earlier[n]).abs().max()) for n in reference)
    assert moved > 1e-3  # the last steps changed the weights by far more than the tolerance

    # The optimizer state is full too, keyed by parameter name like a single process's.
    opt = {
        run: load_file(str(run / "checkpoints" / f"step_{STEPS:07d}" / "optimizer.safetensors")) for run in (fsdp, ddp)
    }
    assert opt[fsdp].keys() == opt[ddp].keys()
    assert any(key.endswith("/exp_avg_sq") for key in opt[fsdp])
    for key, value in opt[fsdp].items():
        assert value.shape == opt[ddp][key].shape, key
        torch.testing.assert_close(value, opt[ddp][key], atol=1e-6, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")

    # These weights are the ones that scored the logged final val loss (eval_batches=2 global batches of 16).
    final_model, _, _ = load_checkpoint(fsdp / "checkpoints" / f"step_{STEPS:07d}")
    with torch.no_grad():
        losses = [
            float(final_model(x, y)[1]) for x, y in val_batches([fsdp / "data" / "val.bin"], GLOBAL_BATCH, BLOCK, 2)
        ]
    assert sum(losses) / len(losses) == pytest.approx(_metrics(fsdp)[-1]["val_loss"], abs=LOSS_TOL)


# ------------------------------------------------------------------------------------------------ 4. rank 0 writes


@pytest.mark.parametrize("kind", ["ddp", "fsdp", "ddp_accum", "fsdp_accum"])
def test_only_rank_zero_writes(kind: str, request) -> None:
    run = request.getfixturevalue(kind)
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == STEPS, "\n".join(lines)  # log_interval=1: one line per step, none from rank 1
    assert [json.loads(line)["step"] for line in lines] == list(range(1, STEPS + 1))
    # kiln-train.toml: the resolved config, written by rank 0 like everything else here
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "data", "kiln-train.toml", "metrics.jsonl"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step_{step:07d}" for step in range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)
    ]  # and no temporaries left behind by another rank
