"""The token shard format: round trips, header fields, and every kind of corruption named clearly."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.tokenize.shards import (
    HEADER_BYTES,
    MAGIC,
    VERSION,
    ShardError,
    dtype_for_vocab,
    open_shard,
    read_header,
    write_shard,
)


def test_dtype_for_vocab():
    assert dtype_for_vocab(1) == np.uint16
    assert dtype_for_vocab(50257) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32
    assert dtype_for_vocab(2**32) == np.uint32
    for bad in (0, -1, 2**32 + 1):
        with pytest.raises(ValueError):
            dtype_for_vocab(bad)


def test_round_trip_uint16(tmp_path):
    tokens = np.array([0, 1, 50256, 7, 65535 % 50257], dtype=np.int64)
    path = write_shard(tmp_path / "a.bin", tokens, vocab_size=50257)
    assert path.stat().st_size == HEADER_BYTES + 2 * len(tokens)
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    assert struct.unpack("<IIQQ", raw[8:32]) == (VERSION, 2, len(tokens), 50257)
    header = read_header(path)
    assert (header.version, header.dtype, header.count, header.vocab_size) == (1, np.dtype(np.uint16), 5, 50257)
    data = open_shard(path)
    assert isinstance(data, np.memmap)
    assert data.dtype == np.uint16 and data.shape == (5,)
    assert not data.flags.writeable
    np.testing.assert_array_equal(data, tokens)


def test_round_trip_uint32_from_list(tmp_path):
    tokens = [0, 100276, 65536, 12]
    path = write_shard(tmp_path / "b.bin", tokens, vocab_size=100277)
    assert path.stat().st_size == HEADER_BYTES + 4 * len(tokens)
    header = read_header(path)
    assert header.dtype == np.uint32 and header.count == 4 and header.vocab_size == 100277
    np.testing.assert_array_equal(open_shard(path), tokens)


def test_empty_shard(tmp_path):
    path = write_shard(tmp_path / "e.bin", [], vocab_size=10)
    assert path.stat().st_size == HEADER_BYTES
    assert open_shard(path).shape == (0,)


@settings(max_examples=40, deadline=None)
@given(
    vocab=st.sampled_from([1, 2, 256, 50257, 65536, 65537, 100277, 2**32]),
    data=st.data(),
)
def test_round_trip_random(vocab, data):
    tokens = data.draw(st.lists(st.integers(0, vocab - 1), max_size=200))
    with tempfile.TemporaryDirectory() as d:
        path = write_shard(Path(d) / "s.bin", np.array(tokens, dtype=np.int64), vocab)
        assert read_header(path).count == len(tokens)
        got = open_shard(path)
        assert got.dtype == dtype_for_vocab(vocab)
        assert got.tolist() == tokens
        del got


@pytest.mark.parametrize("bad", [10, 11, -1])
def test_token_outside_vocab_is_rejected_without_leaving_files(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"token {bad} at index 2"):
        write_shard(tmp_path / "bad.bin", [1, 2, bad, 3, 99], vocab_size=10)
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_old_file(tmp_path):
    path = write_shard(tmp_path / "s.bin", [1, 2, 3], vocab_size=10)
    with pytest.raises(ValueError):
        write_shard(path, [1, 20], vocab_size=10)
    assert list(tmp_path.iterdir()) == [path]
    assert open_shard(path).tolist() == [1, 2, 3]


def test_non_integer_or_2d_tokens_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="integers"):
        write_shard(tmp_path / "f.bin", [1.5, 2.0], vocab_size=10)
    with pytest.raises(ValueError, match="1-D"):
        write_shard(tmp_path / "g.bin", [[1, 2]], vocab_size=10)


def _corrupt(raw: bytes, kind: str) -> bytes:
    if kind == "short":
        return raw[:20]
    if kind == "magic":
        return b"KILNTOX\0" + raw[8:]
    if kind == "version":
        return raw[:8] + struct.pack("<I", 2) + raw[12:]
    if kind == "dtype":
        return raw[:12] + struct.pack("<I", 3) + raw[16:]
    if kind == "truncated":
        return raw[:-1]
    if kind == "trailing":
        return raw + b"\0"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("short", "shorter than the 32-byte header"),
        ("magic", "bad magic"),
        ("version", "unsupported shard version 2"),
        ("dtype", "unknown dtype code 3"),
        ("truncated", "truncated"),
        ("trailing", "1 trailing bytes"),
    ],
)
def test_corruption_raises_shard_error_naming_the_file(tmp_path, kind, message):
    good = write_shard(tmp_path / "good.bin", list(range(10)), vocab_size=50257)
    bad = tmp_path / f"corrupt-{kind}.bin"
    bad.write_bytes(_corrupt(good.read_bytes(), kind))
    for fn in (read_header, open_shard):
        with pytest.raises(ShardError, match=message) as info:
            fn(bad)
        assert str(bad) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_missing_file_is_shard_error(tmp_path):
    with pytest.raises(ShardError, match="not found"):
        open_shard(tmp_path / "nope.bin")
