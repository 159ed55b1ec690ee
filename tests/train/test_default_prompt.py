"""The prompt a checkpoint offers the playground (`default_prompt` in its config.json): the first words of the
training data, or the run's own `default_prompt` setting."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli
from kiln.model.checkpoint import latest_checkpoint
from kiln.train.data import text_to_shards
from kiln.train.default_prompt import first_document_opening, opening_words

TINY = [
    "preset=tiny",
    "model.block_size=32",
    "batch_size=4",
    "device=cpu",
    "precision=fp32",
    "threads=1",
    "max_steps=2",
    "eval_batches=1",
    "sample_tokens=0",
]


def test_opening_words_keeps_a_short_first_line_or_the_first_words():
    assert opening_words("First Citizen:\nBefore we proceed any further, hear me speak.") == "First Citizen:"
    assert opening_words("\n\n  Once upon a time, there was a girl named Lily.") == "Once upon a time,"
    assert opening_words("word " * 3) == "word word word"
    assert opening_words("x" * 100) == "x" * 40
    assert opening_words("") == ""


def test_the_first_document_of_the_shards_skipping_the_separator(tmp_path: Path):
    shards = text_to_shards("MENENIUS:\nWhat work's, my countrymen, in hand?\n" * 20, tmp_path / "s", 0.1)
    assert first_document_opening(shards.train, shards.tokenizer) == "MENENIUS:"
    assert first_document_opening([], shards.tokenizer) == ""


def read_meta(run: Path) -> dict:
    return json.loads((latest_checkpoint(run) / "config.json").read_text())


def test_kiln_train_stores_the_default_prompt_in_the_checkpoint(tmp_path: Path):
    text = tmp_path / "stories.txt"
    text.write_text("Once upon a time there was a tiny model that learned to write.\n" * 200)
    rc, _, err = run_cli(["train", f"data={text}", *TINY, f"out_dir={tmp_path / 'a'}"])
    assert rc == 0, err
    assert read_meta(tmp_path / "a")["default_prompt"] == "Once upon a time"
    rc, _, err = run_cli(["train", f"data={text}", *TINY, "default_prompt=ROMEO:", f"out_dir={tmp_path / 'b'}"])
    assert rc == 0, err
    assert read_meta(tmp_path / "b")["default_prompt"] == "ROMEO:"
