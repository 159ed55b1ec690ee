"""A tokenizer directory may come from an untrusted checkpoint: its `ranks_file` can only name a file inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.tokenizer import ByteTokenizer, load_tokenizer, train_bpe
from kiln.tokenizer.base import META_FILE


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    tok = train_bpe(["hello world, hello tokenizer"] * 20, 260, "gpt4", ["<|endoftext|>"])
    tok.save(tmp_path / "tok")
    assert load_tokenizer(tmp_path / "tok").encode("hello") == tok.encode("hello")
    return tmp_path / "tok"


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.tiktoken", "sub/../../secret.tiktoken", "", 7])
def test_ranks_file_outside_the_directory_is_refused_without_reading_it(saved: Path, name: object) -> None:
    secret = saved.parent / "secret.tiktoken"
    secret.write_text("c2VjcmV0 0\n")  # a valid vocabulary line: reading it would succeed
    meta = json.loads((saved / META_FILE).read_text())
    meta["ranks_file"] = name
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="ranks_file") as e:
        load_tokenizer(saved)
    assert "c2VjcmV0" not in str(e.value) and "root:" not in str(e.value)


def test_other_kinds_still_load(tmp_path: Path) -> None:
    ByteTokenizer().save(tmp_path / "b")
    assert load_tokenizer(tmp_path / "b").encode("é") == list("é".encode())
