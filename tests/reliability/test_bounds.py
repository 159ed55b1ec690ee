"""Absurd sizes and hostile shards are one line naming the field or the file, exit 2, before any allocation: a
negative thread count, a vocabulary with an extra digit, a shard holding a token id outside its vocabulary (an
IndexError on CPU, a device assert on a GPU), and shards written with another tokenizer's vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kiln
from helpers import TINY_TRAIN, run_cli
from kiln.tokenize.shards import HEADER_BYTES, read_header, write_shard

TEXT = Path(kiln.__file__).parent / "assets" / "tinyshakespeare.txt"


def _one_line_error(rc: int, err: str, *names: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for name in names:
        assert name in err, err


@pytest.mark.parametrize("threads", [-2, 0, 10**9])
def test_train_threads_out_of_range_names_the_field(threads: int, tmp_path: Path) -> None:
    rc, _, err = run_cli(["train", *TINY_TRAIN, f"out_dir={tmp_path / 'run'}", "max_steps=1", f"threads={threads}"])
    _one_line_error(rc, err, "threads")
    assert not (tmp_path / "run").exists()


def test_train_negative_sample_tokens_names_the_field(tmp_path: Path) -> None:
    rc, _, err = run_cli(["train", *TINY_TRAIN, f"out_dir={tmp_path / 'run'}", "sample_tokens=-5"])
    _one_line_error(rc, err, "sample_tokens")


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_tokenizer_train_huge_vocab_size_is_refused_with_its_bound(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", str(TEXT), "--out", str(out), "--kind", kind]
    rc, _, err = run_cli([*argv, "--vocab-size", "99999999999", "--quiet"])
    _one_line_error(rc, err, "vocab_size", "16,777,216")  # the bound, 2**24, and why (see bpe_train.MAX_VOCAB_SIZE)
    assert not out.exists()


@pytest.fixture()
def shard_dir(tmp_path: Path) -> Path:
    """A real `kiln tokenize` output (byte tokenizer) of a slice of Tiny Shakespeare."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    out = tmp_path / "tokens"
    rc, _, err = run_cli(["tokenize", str(corpus), "--tokenizer", "byte", "--out", str(out), "--workers", "1"])
    assert rc == 0, err
    return out


def _train(data: Path, run: Path) -> tuple[int, str, str]:
    return run_cli(["train", *TINY_TRAIN, f"data={data}", f"out_dir={run}", "max_steps=1"])


def test_the_shard_dir_trains(shard_dir: Path, tmp_path: Path) -> None:
    rc, _, err = _train(shard_dir, tmp_path / "run")
    assert rc == 0, err


def test_a_token_id_outside_the_vocabulary_is_an_error_naming_the_shard(shard_dir: Path, tmp_path: Path) -> None:
    val = sorted(shard_dir.glob("val_*.bin"))[0]
    header = read_header(val)
    with open(val, "r+b") as f:  # a corrupt token in a shard whose header is intact
        f.seek(HEADER_BYTES + 3 * header.dtype.itemsize)
        f.write(np.array([header.vocab_size + 100], dtype=header.dtype).tobytes())
    rc, _, err = _train(shard_dir, tmp_path / "run")
    _one_line_error(rc, err, str(val), str(header.vocab_size + 100), "outside")


def test_shards_of_another_vocabulary_are_refused_naming_the_shard(shard_dir: Path, tmp_path: Path) -> None:
    train = sorted(shard_dir.glob("train_*.bin"))[0]
    tokens = np.fromfile(train, dtype=read_header(train).dtype, offset=HEADER_BYTES)
    write_shard(train, tokens, vocab_size=50257)  # the same ids, declared as GPT-2's vocabulary
    rc, _, err = _train(shard_dir, tmp_path / "run")
    _one_line_error(rc, err, str(train), "50,257")


def test_crawl_concurrency_beyond_the_socket_budget_names_the_field(tmp_path: Path) -> None:
    rc, _, err = run_cli(["crawl", "http://127.0.0.1:9/", "--out", str(tmp_path / "c"), "--concurrency", "100000"])
    _one_line_error(rc, err, "concurrency", "1024")
    assert not (tmp_path / "c").exists()
