"""Training data for the char-level path: a text file -> token ids -> random (B, T+1) windows.

(Token shards written by `kiln tokenize` come with the tokenizer and pretraining work; a plain text
file with the character tokenizer is the smallest honest dataset and needs no preprocessing.)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kiln.tokenizer import CharTokenizer


def bundled_text(name: str = "tinyshakespeare.txt") -> str:
    return resources.files("kiln.assets").joinpath(name).read_text(encoding="utf-8")


def read_text(source: str) -> str:
    """ "shakespeare" -> the bundled Tiny Shakespeare; anything else is a path to a UTF-8 text file."""
    if source == "shakespeare":
        return bundled_text()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {source} (give a text file, or 'shakespeare')")
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise ValueError(f"training data {source} is empty")
    return text


class TextData:
    """The whole text as one id array, split once into train (first part) and val (last part)."""

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
        x = torch.from_numpy(windows[:, :-1])
        y = torch.from_numpy(windows[:, 1:])
        return x, y
