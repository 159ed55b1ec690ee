"""Training data: token shards (from `kiln tokenize`), or a plain text file turned into char-level shards.

Either way the trainer reads token shards through `TokenLoader`, so a text file gets the same
deterministic, resumable, rank-disjoint batches as a tokenized web corpus. A text file is tokenized once
into `<run>/data/` (train.bin, val.bin, tokenizer/): a resumed run reads exactly the same tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kiln.tokenize.shards import read_header, write_shard
from kiln.tokenizer import CharTokenizer, Tokenizer, load_tokenizer
from kiln.utils.io import atomic_write_text


def bundled_text(name: str = "tinyshakespeare.txt") -> str:
    return resources.files("kiln.assets").joinpath(name).read_text(encoding="utf-8")


def read_text(source: str) -> str:
    """ "shakespeare" -> the bundled Tiny Shakespeare; anything else is a path to a UTF-8 text file."""
    if source == "shakespeare":
        return bundled_text()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"training data not found: {source} (give a text file, a shard directory, or 'shakespeare')"
        )
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text.strip():
        raise ValueError(f"training data {source} is empty")
    return text


@dataclass
class ShardSet:
    """The train and val shards of a dataset and the tokenizer that wrote them."""

    train: list[Path]
    val: list[Path]
    tokenizer: Tokenizer
    directory: Path


def text_to_shards(text: str, directory: Path, val_fraction: float) -> ShardSet:
    """Char-tokenize `text` and write train.bin / val.bin (the last val_fraction) and the tokenizer."""
    tokenizer = CharTokenizer.train(text)
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    n_val = int(len(ids) * val_fraction)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(directory / "tokenizer")
    write_shard(directory / "val.bin", ids[len(ids) - n_val :], vocab_size=tokenizer.vocab_size)
    write_shard(directory / "train.bin", ids[: len(ids) - n_val], vocab_size=tokenizer.vocab_size)
    atomic_write_text(directory / "source.json", json.dumps({"kind": "char", "val_fraction": val_fraction}))
    return open_shard_dir(directory)


def open_shard_dir(directory: str | Path) -> ShardSet:
    """A directory of train*.bin and val*.bin shards with the tokenizer in tokenizer/."""
    directory = Path(directory)
    train = sorted(directory.glob("train*.bin"))
    val = sorted(directory.glob("val*.bin"))
    if not train or not val:
        raise FileNotFoundError(
            f"{directory} has no token shards: expected train*.bin and val*.bin (as `kiln tokenize` writes)"
        )
    tokenizer = load_tokenizer(directory / "tokenizer")
    for path in [*train, *val]:  # the model's vocabulary is the tokenizer's: a shard of another one is refused
        vocab = read_header(path).vocab_size
        if vocab != tokenizer.vocab_size:
            raise ValueError(
                f"{path}: written with a vocabulary of {vocab:,} tokens, but {directory / 'tokenizer'} has "
                f"{tokenizer.vocab_size:,}: the shards and the tokenizer are from different runs"
            )
    return ShardSet(train, val, tokenizer, directory)


def prepare_data(source: str, run_dir: Path, val_fraction: float) -> ShardSet:
    """Shards for `source`: a shard directory as is, or a text file tokenized into run_dir/data (once)."""
    if source != "shakespeare" and Path(source).is_dir():
        return open_shard_dir(source)
    cached = run_dir / "data"
    if (cached / "source.json").exists():
        return open_shard_dir(cached)
    return text_to_shards(read_text(source), cached, val_fraction)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """Bytes of text each token id stands for (for bits per byte, which compares across tokenizers)."""
    return np.array([len(tokenizer.id_to_bytes(i)) for i in range(tokenizer.vocab_size)], dtype=np.int64)


def bytes_per_token(batches: list[tuple[Tensor, Tensor]], lengths: np.ndarray) -> float:
    """Average bytes per target token over the evaluation batches."""
    targets = torch.cat([y.reshape(-1) for _, y in batches]).numpy()
    return float(lengths[targets].sum()) / max(1, targets.size)


class TextData:
    """The whole text as one id array, split into train (first part) and val (last part), with random windows.

    Kept for scripts and notebooks that want batches from a string without writing shards."""

    def __init__(self, text: str, val_fraction: float, tokenizer: CharTokenizer | None = None) -> None:
        self.tokenizer = tokenizer or CharTokenizer.train(text)
        ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        n_val = int(len(ids) * val_fraction)
        self.train, self.val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
        self.bytes_per_token = len(text.encode("utf-8")) / max(1, len(ids))

    def batch(self, split: str, batch_size: int, block_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """B random windows of block_size+1 tokens: inputs are the first T, targets the last T."""
        data = self.train if split == "train" else self.val
        if len(data) <= block_size + 1:
            raise ValueError(f"the {split} split has {len(data)} tokens, too few for block_size {block_size}")
        starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen).numpy()
        windows = np.stack([data[s : s + block_size + 1] for s in starts])
        return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])
