"""Token shards: the file `kiln tokenize` writes and `kiln train` reads.

A shard is one binary file: a fixed 32-byte header, then the tokens. Every number is little-endian.

    offset  size  field
    ------  ----  -----------------------------------------------------------------
         0     8  magic        b"KILNTOK\\0"  (identifies the file; catches a wrong path early)
         8     4  version      uint32, currently 1
        12     4  dtype code   uint32, the byte width of one token: 2 = uint16, 4 = uint32
        16     8  count        uint64, the number of tokens that follow
        24     8  vocab size   uint64, the tokenizer's vocabulary size (every token is < it)
        32   ...  tokens       count * width bytes, a flat array of the dtype above

Why this layout:

* The tokens are a plain flat array at a fixed offset, so a shard opens with `np.memmap`: a 10 GB corpus
  costs no RAM, the OS pages in only the windows training actually touches, and many processes share them.
* uint16 halves the disk (and page cache) for vocabularies up to 65,536 tokens, which covers GPT-2's 50,257;
  larger vocabularies (e.g. 100,277) use uint32. `dtype_for_vocab` picks the narrowest that fits.
* The header records the count, so a truncated copy or trailing junk is detected from the file size alone,
  and the vocab size, so a shard can be checked against the tokenizer and model it is used with.
* The fields are 8-byte aligned and the header is 32 bytes, so the token array is aligned for both dtypes.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiln.utils.io import atomic_write

MAGIC = b"KILNTOK\0"
VERSION = 1
HEADER_BYTES = 32
_HEADER = struct.Struct("<8sIIQQ")
assert _HEADER.size == HEADER_BYTES
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


class ShardError(ValueError):
    """A shard file that is too short, corrupt, truncated or of an unknown version; the message names the file."""


@dataclass(frozen=True)
class ShardHeader:
    version: int
    dtype: np.dtype
    count: int
    vocab_size: int


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every token id fits (vocab_size <= 65536), else uint32 (vocab_size <= 2**32)."""
    vocab_size = operator.index(vocab_size)
    if vocab_size < 1 or vocab_size > 2**32:
        raise ValueError(f"vocab_size must be between 1 and 2**32, got {vocab_size}")
    return _DTYPES[2] if vocab_size <= 2**16 else _DTYPES[4]


def write_shard(path: str | Path, tokens: np.ndarray | Sequence[int], vocab_size: int) -> Path:
    """Write `tokens` as a shard at `path` (atomically: readers see the old file or the whole new one)."""
    path = Path(path)
    dtype = dtype_for_vocab(vocab_size)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"tokens must be integers, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"token {int(arr[i])} at index {i} is outside the vocabulary [0, {vocab_size}) ({bad.size} bad tokens)"
        )
    header = _HEADER.pack(MAGIC, VERSION, dtype.itemsize, arr.size, vocab_size)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header)
            arr.astype(dtype, copy=False).tofile(f)

    atomic_write(path, write)
    return path


def read_header(path: str | Path) -> ShardHeader:
    """Read and validate the header (including that the file size matches the token count)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
            size = f.seek(0, 2)
    except FileNotFoundError:
        raise ShardError(f"{path}: shard file not found") from None
    except IsADirectoryError:
        raise ShardError(f"{path}: is a directory, not a shard file") from None
    if len(raw) < HEADER_BYTES:
        raise ShardError(
            f"{path}: not a kiln token shard: {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header"
        )
    magic, version, code, count, vocab_size = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise ShardError(f"{path}: not a kiln token shard: bad magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise ShardError(f"{path}: unsupported shard version {version} (this kiln reads version {VERSION})")
    if code not in _DTYPES:
        raise ShardError(f"{path}: unknown dtype code {code} (expected 2 for uint16 or 4 for uint32)")
    dtype = _DTYPES[code]
    if vocab_size < 1 or vocab_size > 2 ** (8 * dtype.itemsize):
        raise ShardError(f"{path}: vocab size {vocab_size} does not fit dtype {dtype.name}")
    expected = HEADER_BYTES + count * dtype.itemsize
    if size != expected:
        problem = "truncated" if size < expected else f"{size - expected} trailing bytes"
        raise ShardError(
            f"{path}: {problem}: file is {size} bytes, header says {count} {dtype.name} tokens ({expected} bytes)"
        )
    return ShardHeader(version=version, dtype=dtype, count=count, vocab_size=vocab_size)


def open_shard(path: str | Path) -> np.memmap:
    """The shard's tokens as a read-only memory map of shape (count,), after validating the file."""
    header = read_header(path)
    if header.count == 0:  # mmap cannot map zero bytes; an empty read-only array behaves the same
        empty = np.empty(0, dtype=header.dtype).view(np.memmap)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=header.dtype, mode="r", offset=HEADER_BYTES, shape=(header.count,))
