"""Training checkpoints: everything needed to continue a run exactly, written so a crash never leaves a half one.

A run directory holds `checkpoints/step_NNNNNNN/`, each a complete model checkpoint (model.safetensors,
config.json, tokenizer/ — what `kiln generate` and `kiln serve` read) plus:
- optimizer.safetensors: every optimizer's state tensors (Adam moments, Muon momentum), keyed by
  "<optimizer index>/<parameter name>/<state name>", so the file holds only tensors and loads without pickle;
- trainer_state.json: step, token count, elapsed time, best validation loss, the data loader's position, the
  loss scaler, each rank's RNG states (python, numpy, torch, CUDA), each optimizer's hyperparameters and
  non-tensor state, and the run's config.

A checkpoint is written into a hidden temporary directory (every file fsynced) and renamed into place, so a
`step_*` directory is always complete; `kill -9` mid-write leaves only a temporary to clean up. After each save
the oldest checkpoints beyond `keep_last` are deleted, never the best one.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kiln.model.checkpoint import CHECKPOINTS, STATE, latest_checkpoint, step_dirs
from kiln.utils.io import atomic_write, atomic_write_text, sha256_file

OPTIMIZER = "optimizer.safetensors"


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed from (missing, corrupt, or for a different run)."""


# ---------------------------------------------------------------------------------------------- RNG
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    """This process's random states as JSON-able values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# ----------------------------------------------------------------------------------------- optimizer
def flatten_optimizer_states(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split full optimizer state dicts (keyed by parameter name) into tensors and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    meta: list[dict[str, Any]] = []
    for i, sd in enumerate(states):
        scalars: dict[str, dict[str, Any]] = {}
        for name, entry in sd["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{i}/{name}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(name, {})[key] = value
        groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
        meta.append({"param_groups": groups, "scalars": scalars})
    return tensors, meta


def unflatten_optimizer_states(tensors: dict[str, torch.Tensor], meta: list[dict[str, Any]]) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = [{"state": {}, "param_groups": m["param_groups"]} for m in meta]
    for key, value in tensors.items():
        i, name, field = key.split("/")
        states[int(i)]["state"].setdefault(name, {})[field] = value
    for i, m in enumerate(meta):
        for name, scalars in m["scalars"].items():
            states[i]["state"].setdefault(name, {}).update(scalars)
    return states


def write_checkpoint(run_dir: Path, step: int, write_model, trainer_state: dict[str, Any], optim_tensors) -> Path:
    """Write a checkpoint for `step` atomically: `write_model(dir)` writes the model checkpoint files, then
    optimizer tensors and trainer_state.json go beside them, then the directory is renamed into place."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".step_{step:07d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_model(tmp)
    atomic_write(tmp / OPTIMIZER, lambda p: save_file(optim_tensors, str(p)))
    trainer_state = {**trainer_state, "optimizer_sha256": sha256_file(tmp / OPTIMIZER)}
    atomic_write_text(tmp / STATE, json.dumps(trainer_state))
    if final.exists():  # the same step saved again (e.g. a signal right after a scheduled save)
        old = root / f".step_{step:07d}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def prune(run_dir: Path, keep_last: int, best_step: int | None) -> None:
    """Delete checkpoints older than the newest keep_last, except the best; and stale temporaries."""
    dirs = step_dirs(run_dir)
    for step, d in dirs[:-keep_last]:
        if step != best_step:
            shutil.rmtree(d, ignore_errors=True)
    for d in (run_dir / CHECKPOINTS).glob(".step_*"):
        if not d.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(d, ignore_errors=True)


def find_resume_dir(path: str | Path) -> Path:
    """`--resume` takes a run directory (continue from its latest checkpoint) or one checkpoint directory."""
    path = Path(path)
    if (path / STATE).exists():
        return path
    if not path.exists():
        raise ResumeError(f"cannot resume: {path} does not exist")
    latest = latest_checkpoint(path)
    if latest is None:
        raise ResumeError(f"cannot resume: {path} has no complete checkpoint (no {CHECKPOINTS}/step_*/{STATE})")
    return latest


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeError(f"{path} is missing: {ckpt} is not a resumable checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResumeError(f"{path} is corrupt ({e})") from e
    needed = ("step", "loader", "rng", "optimizers", "train_config", "world_size")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ResumeError(f"{path} is missing {', '.join(missing)}")
    return state


def read_optimizer_tensors(ckpt: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    path = ckpt / OPTIMIZER
    if expected_sha256 and path.exists() and sha256_file(path) != expected_sha256:
        raise ResumeError(f"{path} is corrupt or truncated: its sha256 differs from the one in {STATE}")
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise ResumeError(f"{path} is missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise ResumeError(f"{path} is corrupt or truncated ({e})") from e


def claim_run_dir(out_dir: Path, overwrite: bool) -> None:
    """A new run must not mix with an earlier run's checkpoints, metrics and cached data in the same directory."""
    earlier = step_dirs(out_dir)
    if not earlier and not (out_dir / "data").exists():
        return
    if not overwrite:
        what = f"checkpoints up to step {earlier[-1][0]}" if earlier else "data from an earlier run"
        raise ValueError(
            f"{out_dir} already holds {what}: continue it with `kiln train --resume {out_dir}`, "
            "start fresh with overwrite=true (deletes it), or choose another out_dir="
        )
    for name in (CHECKPOINTS, "data", "metrics.jsonl", "tensorboard"):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
