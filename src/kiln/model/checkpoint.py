"""Checkpoints: a directory with `model.safetensors`, `config.json` and the tokenizer.

safetensors holds only tensors, so loading a checkpoint from anywhere can never run code (a pickle
can); config.json says how to rebuild the model, so the weights load into the right shape or fail
with a message that names the file and the mismatch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model

from kiln.config import ConfigError, from_dict, to_dict
from kiln.model import GPT, GPTConfig
from kiln.model.device import resolve_device
from kiln.tokenizer import Tokenizer, load_tokenizer
from kiln.utils.io import atomic_write, atomic_write_text, sha256_file
from kiln.utils.suggest import near_path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER_DIR = "tokenizer"
# A training run keeps its checkpoints as <run>/checkpoints/step_NNNNNNN/, each complete once its trainer state
# file exists (written last); every stage that reads models resolves a run directory the same way.
CHECKPOINTS = "checkpoints"
STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or does not fit its config."""


def save_checkpoint(
    directory: str | Path,
    model: GPT,
    tokenizer: Tokenizer | None,
    meta: dict[str, Any] | None = None,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights, tokenizer and config; config.json goes last, so its presence marks a complete checkpoint.

    `state_dict` replaces model.state_dict() (a full state gathered from FSDP shards, say)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    if state_dict is None:
        atomic_write(directory / WEIGHTS, lambda p: save_model(model, str(p)))
    else:
        state = {k: v.detach().contiguous() for k, v in state_dict.items()}
        if cfg.tie_embeddings:  # one copy of the tied matrix; loading restores the other name
            state.pop("lm_head.weight", None)
        atomic_write(directory / WEIGHTS, lambda p: save_file(state, str(p)))
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER_DIR)
    # safetensors has no checksum of its own: record one so silent corruption of the tensor bytes is caught.
    config = {"model": to_dict(cfg), "weights_sha256": sha256_file(directory / WEIGHTS), **(meta or {})}
    atomic_write_text(directory / CONFIG, json.dumps(config, indent=2))
    return directory


def step_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and d.is_dir() and (d / STATE).exists():
            found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    dirs = step_dirs(run_dir)
    return dirs[-1][1] if dirs else None


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the lowest validation loss (as the latest one records it), else the latest."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return None
    try:
        best_step = json.loads((latest / STATE).read_text(encoding="utf-8")).get("best_step")
    except (OSError, json.JSONDecodeError):
        return latest
    best = Path(run_dir) / CHECKPOINTS / f"step_{best_step:07d}" if isinstance(best_step, int) else None
    return best if best is not None and (best / STATE).exists() else latest


def resolve_checkpoint(directory: str | Path) -> Path:
    """A checkpoint directory itself, or for a training run's directory the checkpoint to use from it:
    the best by validation loss, else the latest."""
    directory = Path(directory)
    if (directory / CONFIG).exists() or not (directory / CHECKPOINTS).is_dir():
        return directory
    found = best_checkpoint(directory)
    if found is None:
        raise CheckpointError(f"{directory} is a training run with no complete checkpoint yet")
    return found


def is_checkpoint_or_run(path: Path) -> bool:
    """A checkpoint directory (config.json) or a training run's (checkpoints/)."""
    return (path / CONFIG).is_file() or (path / CHECKPOINTS).is_dir()


def missing_checkpoint_hint(directory: Path) -> str:
    """Why `directory` is no checkpoint, and the one it most likely meant: a sibling with a close name (a typo), or
    the checkpoints and runs it holds (a models directory given instead of one model in it)."""
    if not directory.exists():
        near = near_path(directory, accept=is_checkpoint_or_run)
        return "it does not exist" + (f"; did you mean {str(near)!r}?" if near is not None else "")
    try:
        inside = sorted(p.name for p in directory.iterdir() if p.is_dir() and is_checkpoint_or_run(p))
    except OSError:
        inside = []
    if inside:
        shown = ", ".join(str(directory / name) for name in inside[:5]) + (", ..." if len(inside) > 5 else "")
        return f"{CONFIG} is missing; it holds checkpoints or runs: did you mean one of {shown}?"
    return f"{CONFIG} is missing"


def read_config(directory: str | Path) -> tuple[GPTConfig, dict[str, Any]]:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise CheckpointError(f"{directory} is not a kiln checkpoint: {missing_checkpoint_hint(Path(directory))}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        cfg = from_dict(GPTConfig, meta["model"], where=str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path}: unreadable model config ({e})") from e
    return cfg, meta


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer | None, dict[str, Any]]:
    """Rebuild the model from config.json and load its safetensors weights (strictly: every tensor present,
    every shape right). Returns (model in eval mode, tokenizer or None, the config's metadata)."""
    device = resolve_device(device)
    directory = resolve_checkpoint(directory)
    cfg, meta = read_config(directory)
    weights = directory / WEIGHTS
    expected_sha = meta.get("weights_sha256")
    if expected_sha and weights.exists() and sha256_file(weights) != expected_sha:
        raise CheckpointError(
            f"{weights} is corrupt or truncated: its sha256 differs from the one recorded in {CONFIG}"
        )
    try:
        state = load_file(str(weights), device=str(device))
    except FileNotFoundError:
        raise CheckpointError(f"{weights} is missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is corrupt or truncated ({e})") from e
    with torch.device(device):
        model = GPT(cfg)
    # save_model dropped one name of each tied pair; put it back before the strict load.
    if cfg.tie_embeddings:
        for name in ("wte.weight", "lm_head.weight"):
            other = "lm_head.weight" if name == "wte.weight" else "wte.weight"
            if name not in state and other in state:
                state[name] = state[other]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if names
        )
        raise CheckpointError(f"{weights} does not match {directory / CONFIG}: {detail}")
    model.load_state_dict(state, strict=True)
    model.eval()
    tok_dir = directory / TOKENIZER_DIR
    tokenizer = load_tokenizer(tok_dir) if tok_dir.exists() else None
    return model, tokenizer, meta
