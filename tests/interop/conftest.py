"""Tests of kiln.interop: export to and import from Hugging Face (and GGUF), against transformers itself.

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import sentence_corpus
from kiln.tokenizer import BPETokenizer, train_bpe


@pytest.fixture(scope="session")
def bpe_tokenizer() -> BPETokenizer:
    """A small byte-level BPE trained on English sentences, with <|endoftext|> and the chat tokens."""
    text = sentence_corpus(400, seed=3)
    return train_bpe([text], vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="session")
def hf_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer: BPETokenizer) -> Path:
    """That tokenizer as transformers saves a fast tokenizer (tokenizer.json + tokenizer_config.json)."""
    import json

    from kiln.interop.hf_tokenizer import tokenizer_config, tokenizer_json

    d = tmp_path_factory.mktemp("hf_tok")
    (d / "tokenizer.json").write_text(json.dumps(tokenizer_json(bpe_tokenizer)), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(bpe_tokenizer, 64)), encoding="utf-8")
    return d
