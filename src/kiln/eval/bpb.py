"""Bits per byte of documents: the model's code length per UTF-8 byte, comparable across tokenizers.

bits/byte = sum over scored tokens of -log2 P(token | preceding tokens) / sum of those tokens' bytes, the same
quantity `kiln train` logs as val_bpb. A document longer than the window is scored with a sliding window (the
transformers perplexity guide's method): windows of `window` inputs start every `stride` tokens and each scores
only the targets no earlier window scored, so every token is scored once, with at least window - stride tokens of
context once the first window is past. stride = window gives the trainer's non-overlapping windows exactly.

Documents: a text file (one document), JSONL (the "text" field of each line), Parquet (the "text" column, as
`kiln clean` writes), or token shards (`*.bin` from `kiln tokenize`, read as they are). Text documents start with
the end-of-text token where the tokenizer has one, so their first token is scored too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kiln.model.gpt import GPT
from kiln.tokenizer import Tokenizer


@dataclass
class BitsPerByte:
    path: str
    bits_per_byte: float
    tokens: int
    bytes: int
    documents: int


def documents(path: str | Path, tokenizer: Tokenizer, eot: int | None) -> Iterator[np.ndarray]:
    """Token arrays of the documents in `path` (see the module docstring for the formats)."""
    from kiln.tokenize.shards import open_shard, read_header

    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.bin"))
        if not shards:
            raise FileNotFoundError(f"{path}: a directory for bits per byte must hold token shards (*.bin)")
        for shard in shards:
            yield from documents(shard, tokenizer, eot)
        return
    if not path.is_file():
        raise FileNotFoundError(f"bits-per-byte data not found: {path}")
    prefix = [eot] if eot is not None else []
    if path.suffix == ".bin":
        vocab = read_header(path).vocab_size
        if vocab != tokenizer.vocab_size:
            raise ValueError(
                f"{path}: written with a vocabulary of {vocab:,}; the model's has {tokenizer.vocab_size:,}"
            )
        yield np.asarray(open_shard(path), dtype=np.int64)
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        text = json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise ValueError(f"{path}:{lineno}: expected a JSON object with a 'text' field") from None
                    yield np.asarray(prefix + tokenizer.encode(text), dtype=np.int64)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            for text in batch.column(0).to_pylist():
                yield np.asarray(prefix + tokenizer.encode(text), dtype=np.int64)
    else:
        text = path.read_bytes().decode("utf-8", errors="replace")
        yield np.asarray(prefix + tokenizer.encode(text), dtype=np.int64)


def windows(n: int, window: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, first scored target) per window over a document of n tokens: inputs ids[start:end],
    targets ids[start+1:end+1], of which those at index >= first are scored."""
    scored_to = 0  # ids[:scored_to + 1] are scored or are the unscored first token
    start = 0
    while scored_to < n - 1:
        end = min(start + window, n - 1)
        yield start, end, scored_to + 1
        scored_to = end
        start += stride


@torch.no_grad()
def bits_per_byte(
    model: GPT,
    tokenizer: Tokenizer,
    docs: Iterator[np.ndarray],
    *,
    window: int,
    stride: int,
    batch_size: int = 8,
    max_tokens: int | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> tuple[float, int, int, int]:
    """(bits per byte, scored tokens, their bytes, documents) over `docs`, at most max_tokens tokens read."""
    if not 1 <= stride <= window <= model.config.block_size:
        raise ValueError(f"need 1 <= stride ({stride}) <= window ({window}) <= block_size ({model.config.block_size})")
    device = model.lm_head.weight.device
    byte_len = np.array([len(tokenizer.id_to_bytes(i)) for i in range(tokenizer.vocab_size)], dtype=np.int64)
    nats, n_tok, n_bytes, n_docs, read = 0.0, 0, 0, 0, 0
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}  # input length -> (inputs, targets with -1 skipped)

    def flush(length: int) -> None:
        nonlocal nats
        batch = pending.pop(length)
        x = torch.from_numpy(np.stack([b[0] for b in batch])).to(device)
        y = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)
        logits, _ = model(x, all_logits=True)
        loss = F.cross_entropy(logits.double().flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum")
        nats += float(loss)
        if on_tokens is not None:
            on_tokens(int((y >= 0).sum()))

    for ids in docs:
        if max_tokens is not None:
            if read >= max_tokens:
                break
            ids = ids[: max_tokens - read]
        read += len(ids)
        if len(ids) < 2:
            continue
        n_docs += 1
        for start, end, first in windows(len(ids), window, stride):
            x = ids[start:end]
            y = ids[start + 1 : end + 1].copy()
            y[: first - start - 1] = -1
            scored = y[y >= 0]
            n_tok += scored.size
            n_bytes += int(byte_len[scored].sum())
            pending.setdefault(len(x), []).append((x, y))
            if len(pending[len(x)]) >= batch_size:
                flush(len(x))
    for length in list(pending):
        flush(length)
    if n_bytes == 0:
        raise ValueError("no tokens to score: the documents are empty or a single token each")
    return nats / math.log(2) / n_bytes, n_tok, n_bytes, n_docs
