"""Hugging Face's weight files: `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` with
`model.safetensors.index.json` once the model passes a size threshold (what `save_pretrained` writes, and what
transformers, vLLM and llama.cpp's converter read).

Only safetensors are read: a `pytorch_model.bin` is a pickle, and unpickling a downloaded file can run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kiln.utils.io import atomic_write, atomic_write_text

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def save_weights(state: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int) -> list[str]:
    """Write `state` as one file, or as shards of at most `max_shard_bytes` (a tensor bigger than that gets a
    shard of its own) with an index. Returns the file names written."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor.contiguous()
        size += nbytes
    meta = {"format": "pt"}  # transformers checks this key before trusting the file's layout
    if len(shards) == 1:
        atomic_write(directory / SINGLE, lambda p: save_file(shards[0], str(p), metadata=meta))
        return [SINGLE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    for file, shard in zip(names, shards, strict=True):
        atomic_write(directory / file, lambda p, shard=shard: save_file(shard, str(p), metadata=meta))
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_text(directory / INDEX, json.dumps(index, indent=2))
    return [*names, INDEX]


def load_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face model directory (single file or sharded); clear errors for pickles,
    missing shards and corrupt files."""
    single, index = directory / SINGLE, directory / INDEX
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [directory / name for name in dict.fromkeys(weight_map.values())]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{index}: not a valid safetensors index ({e})") from e
        for f in files:
            if f.parent != directory or not f.is_file():
                raise ValueError(f"{index} names {f.name}, which is missing from {directory}")
    else:
        pickles = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt*"))
        if pickles:
            raise ValueError(
                f"{directory} has only {pickles[0]}: kiln reads safetensors only (a .bin/.pt file is a pickle, and"
                " loading one can run code); convert it with transformers' save_pretrained(safe_serialization=True)"
            )
        raise ValueError(f"{directory} has no {SINGLE} or {INDEX}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{f} is corrupt or truncated ({e})") from e
    return state
