"""`kiln tokenizer train` as a stage: `run(TokenizerTrainConfig) -> TokenizerTrainSummary` trains what the library
trains, renders what the command prints, leaves kiln-tokenizer-train.toml in the tokenizer directory (which every
reader of a tokenizer directory ignores and no copy of the tokenizer carries), and writes nothing on a mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import run_cli
from kiln.config import load_config, to_dict
from kiln.model.checkpoint import save_checkpoint
from kiln.tokenize import (
    TokenizeConfig,
    TokenizerTrainConfig,
    TokenizerTrainSummary,
    run_tokenize,
    run_tokenizer_train,
)
from kiln.tokenizer import BPETokenizer, CharTokenizer, WordTokenizer, get_tokenizer, load_tokenizer, train_bpe
from kiln.tokenizer.bpe import CHAT_TOKENS, ENDOFTEXT
from kiln.train.data import bundled_text

SHAKESPEARE = bundled_text()
CONFIG_FILE = "kiln-tokenizer-train.toml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(SHAKESPEARE, encoding="utf-8")
    return path


def _seconds_and_dir(text: str, directory: Path) -> str:
    """The output with its timing and output directory blanked, so two runs can be compared."""
    return re.sub(r" in \d+\.\d s ", " in _ s ", text).replace(str(directory), "DIR")


def test_bpe_with_hf_trains_what_the_library_trains_and_prints_what_the_command_prints(
    corpus: Path, tmp_path: Path
) -> None:
    config = TokenizerTrainConfig(inputs=[str(corpus)], out_dir=str(tmp_path / "run"), vocab_size=600, hf=True)
    config.quiet = True
    summary = run_tokenizer_train(config)
    assert isinstance(summary, TokenizerTrainSummary)
    tok = load_tokenizer(config.out_dir)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # chat tokens are reserved by default
    assert isinstance(tok, BPETokenizer) and tok.ranks == train_bpe([SHAKESPEARE], 600, special_tokens=specials).ranks
    assert (summary.kind, summary.vocab_size, summary.documents) == ("bpe", 600, 1)
    assert summary.text_bytes == len(SHAKESPEARE.encode("utf-8"))
    assert summary.hf_json == str(tmp_path / "run" / "tokenizer.json") and Path(summary.hf_json).is_file()

    cli_dir = tmp_path / "cli"
    rc, printed, err = run_cli(
        ["tokenizer", "train", str(corpus), "--out", str(cli_dir), "--vocab-size", "600", "--hf", "--quiet"]
    )
    assert rc == 0, err
    assert _seconds_and_dir(summary.render() + "\n", tmp_path / "run") == _seconds_and_dir(printed, cli_dir)


def test_the_resolved_config_is_left_beside_the_tokenizer_and_travels_nowhere(corpus: Path, tmp_path: Path) -> None:
    """kiln-tokenizer-train.toml loads back to the config; the directory still loads as a tokenizer by path or by
    name; `kiln tokenize` and checkpoints save the tokenizer afresh, without it."""
    tok_dir = tmp_path / "tok"
    config = TokenizerTrainConfig(
        inputs=[str(corpus)], out_dir=str(tok_dir), vocab_size=300, special=["<|pad|>"], chat_tokens=True, quiet=True
    )
    run_tokenizer_train(config)
    assert to_dict(load_config(TokenizerTrainConfig, tok_dir / CONFIG_FILE)) == to_dict(config)
    tok = get_tokenizer(str(tok_dir))
    assert set(tok.special_tokens) == {ENDOFTEXT, "<|pad|>", *CHAT_TOKENS}

    shards = tmp_path / "shards"
    run_tokenize(TokenizeConfig(inputs=[str(corpus)], out_dir=str(shards), tokenizer=str(tok_dir), quiet=True))
    assert not (shards / "tokenizer" / CONFIG_FILE).exists()
    assert load_tokenizer(shards / "tokenizer").ranks == tok.ranks
    checkpoint = tmp_path / "ckpt"
    save_checkpoint(checkpoint, _tiny_model(tok.vocab_size), tok)
    assert not (checkpoint / "tokenizer" / CONFIG_FILE).exists()


def _tiny_model(vocab_size: int):
    from kiln.model import GPT, GPTConfig

    return GPT(GPTConfig(vocab_size=vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))


@pytest.mark.parametrize(("kind", "cls"), [("word", WordTokenizer), ("char", CharTokenizer)])
def test_word_and_char_kinds(kind: str, cls: type, corpus: Path, tmp_path: Path) -> None:
    config = TokenizerTrainConfig(inputs=[str(corpus)], out_dir=str(tmp_path / kind), kind=kind, vocab_size=600)  # type: ignore[arg-type]
    config.hf, config.quiet = True, True  # hf is for bpe only: ignored
    summary = run_tokenizer_train(config)
    tok = load_tokenizer(tmp_path / kind)
    assert isinstance(tok, cls) and summary.vocab_size == tok.vocab_size
    assert summary.hf_json is None and not (tmp_path / kind / "tokenizer.json").exists()
    assert summary.render().startswith(f"{kind} tokenizer: vocab {tok.vocab_size:,} from 1 documents")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inputs": []}, "inputs"),
        ({"vocab_size": 100}, "vocab_size 100 is too small"),
        ({"kind": "word", "vocab_size": 2}, "vocab_size 2 is too small"),
        ({"kind": "sentencepiece"}, "kind"),
        ({"trainer": "fast"}, "trainer"),
        ({"pattern": "(unclosed"}, "split pattern"),
        ({"special": [""]}, "special"),
        ({"max_mb": -1.0}, "max_mb"),
        ({"text_field": ""}, "text_field"),
        ({"separator": ""}, "separator"),
        ({"inputs": ["EMPTY"]}, "empty corpus"),
    ],
)
def test_mistakes_are_value_errors_and_write_nothing(changes: dict, message: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    config = TokenizerTrainConfig(inputs=[str(empty)], out_dir=str(tmp_path / "tok"), quiet=True)
    for key, value in changes.items():
        setattr(config, key, [str(empty)] if value == ["EMPTY"] else value)
    with pytest.raises(ValueError, match=re.escape(message)):
        run_tokenizer_train(config)
    assert not (tmp_path / "tok").exists()
