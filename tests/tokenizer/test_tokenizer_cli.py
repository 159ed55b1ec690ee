"""Tests for the tokenizer commands of the `kiln` command line, run in-process through kiln.cli.main:
`kiln tokenizer train|encode|decode|show|export-hf` and `kiln tokenize`, including their one-line errors."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer

from helpers import run_cli
from kiln.tokenizer import BPETokenizer, CharTokenizer, WordTokenizer, get_tokenizer, load_tokenizer, train_bpe
from kiln.tokenizer import pretrained as pretrained_module
from kiln.tokenizer.base import META_FILE
from kiln.tokenizer.bpe import CHAT_TOKENS, ENDOFTEXT, RANKS_FILE
from kiln.train.data import bundled_text

SHAKESPEARE = bundled_text()
SAMPLE = "Hello world! To be, or not to be: 2026 tokenization, café 東京 😀\n  indented\tline"


_run = run_cli


def _error(argv: list[str], command: str) -> str:
    """Run a command that must fail as a user error: exit 2, nothing on stdout, exactly one line
    `kiln <command>: error: ...` on stderr and no traceback. Returns that line."""
    rc, out, err = _run(argv)
    assert rc == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"kiln {command}: error: "), err  # the whole command, e.g. "kiln tokenizer train"
    assert out == ""
    return lines[0]


def _ids(stdout: str) -> list[int]:
    return [int(x) for x in stdout.split()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(SHAKESPEARE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, int, str, str]:
    """`kiln tokenizer train corpus --out D --vocab-size 600 --hf --quiet`, once for the module."""
    directory = tmp_path_factory.mktemp("tok") / "bpe600"
    rc, out, err = _run(
        ["tokenizer", "train", str(corpus), "--out", str(directory), "--vocab-size", "600", "--hf", "--quiet"]
    )
    return directory, rc, out, err


@pytest.fixture
def tok_dir(trained: tuple[Path, int, str, str]) -> Path:
    directory, rc, _, err = trained
    assert rc == 0, err
    return directory


# ------------------------------------------------------------------------------------------------ tokenizer train


def test_train_writes_the_vocabulary_and_a_hf_tokenizer_json(trained: tuple[Path, int, str, str]) -> None:
    directory, rc, out, err = trained
    assert rc == 0, err
    assert (directory / META_FILE).is_file()
    assert (directory / RANKS_FILE).is_file()
    assert (directory / "tokenizer.json").is_file()
    tok = load_tokenizer(directory)
    assert isinstance(tok, BPETokenizer)
    assert tok.vocab_size == 600
    # <|endoftext|> and, by default, the chat template's two tokens follow the merges.
    assert tok.special_tokens == {ENDOFTEXT: 597, "<|im_start|>": 598, "<|im_end|>": 599}
    specials = [ENDOFTEXT, "<|im_start|>", "<|im_end|>"]
    assert tok.ranks == train_bpe([SHAKESPEARE], 600, special_tokens=specials).ranks  # what the library trains
    size_mb = len(SHAKESPEARE.encode("utf-8")) / 1e6
    assert f"bpe tokenizer: vocab {tok.vocab_size:,} from 1 documents ({size_mb:,.1f} MB of text)" in out
    assert f"-> {directory}" in out
    assert f"Hugging Face tokenizer.json: {directory / 'tokenizer.json'}" in out
    assert "note:" not in out
    hf = HFTokenizer.from_file(str(directory / "tokenizer.json"))
    text = SHAKESPEARE[:5000] + SAMPLE
    assert hf.encode(text).ids == tok.encode(text)


def test_reference_trainer_writes_the_same_ranks(tok_dir: Path, corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "ref"
    rc, out, err = _run(
        [
            "tokenizer",
            "train",
            str(corpus),
            "--out",
            str(out_dir),
            "--vocab-size",
            "600",
            "--trainer",
            "reference",
            "--quiet",
        ]
    )
    assert rc == 0, err
    assert out.startswith("bpe tokenizer: vocab 600 ")
    assert (out_dir / RANKS_FILE).read_bytes() == (tok_dir / RANKS_FILE).read_bytes()
    assert not (out_dir / "tokenizer.json").exists()  # only with --hf


def test_train_word_kind(corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "word"
    rc, out, err = _run(
        [
            "tokenizer",
            "train",
            str(corpus),
            "--out",
            str(out_dir),
            "--kind",
            "word",
            "--vocab-size",
            "600",
            "--hf",
            "--quiet",
        ]
    )
    assert rc == 0, err
    tok = load_tokenizer(out_dir)
    assert isinstance(tok, WordTokenizer)
    assert tok.vocab_size == 600
    assert ENDOFTEXT in tok.special_tokens
    assert out.startswith("word tokenizer: vocab 600 from 1 documents")
    assert "Hugging Face" not in out and not (out_dir / "tokenizer.json").exists()  # --hf is for BPE only
    text = "the king and the queen"
    ids = tok.encode(text)
    assert tok.unk_id not in ids  # common words are in a 600-word Shakespeare vocabulary
    assert tok.decode(ids) == text


def test_train_char_kind(corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "char"
    rc, out, err = _run(["tokenizer", "train", str(corpus), "--out", str(out_dir), "--kind", "char", "--quiet"])
    assert rc == 0, err
    tok = load_tokenizer(out_dir)
    assert isinstance(tok, CharTokenizer)
    assert tok.vocab_size == len(set(SHAKESPEARE))
    assert out.startswith(f"char tokenizer: vocab {len(set(SHAKESPEARE))} from 1 documents")
    text = SHAKESPEARE[:2000]
    assert tok.decode(tok.encode(text)) == text


def test_train_chat_tokens_and_extra_specials(corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "chat"
    argv = ["tokenizer", "train", str(corpus), "--out", str(out_dir), "--vocab-size", "600", "--chat-tokens"]
    rc, _, err = _run([*argv, "--special", "<|pad|>", "--quiet"])
    assert rc == 0, err
    tok = load_tokenizer(out_dir)
    assert isinstance(tok, BPETokenizer)
    specials = tok.special_tokens
    assert set(specials) == {ENDOFTEXT, "<|pad|>", *CHAT_TOKENS}
    assert tok.vocab_size == 600  # the specials count towards the requested size
    assert sorted(specials.values()) == list(range(600 - len(specials), 600))
    assert max(tok.ranks.values()) < min(specials.values())
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", allowed_special="all")
    assert ids[0] == specials["<|im_start|>"] and ids[-1] == specials["<|im_end|>"]


# ------------------------------------------------------------------------------------------------ encode / decode


def test_encode_prints_the_library_ids_and_decode_prints_the_text_back(tok_dir: Path) -> None:
    tok = get_tokenizer(tok_dir)
    rc, out, err = _run(["tokenizer", "encode", "--tokenizer", str(tok_dir), SAMPLE])
    assert rc == 0, err
    ids = _ids(out)
    assert ids == tok.encode(SAMPLE)
    assert out.endswith("\n") and len(out.strip().splitlines()) == 1

    rc, out, err = _run(["tokenizer", "decode", "--tokenizer", str(tok_dir), *map(str, ids)])
    assert rc == 0, err
    assert out == SAMPLE + "\n"
    rc, out, _ = _run(["tokenizer", "decode", "--tokenizer", str(tok_dir), "--no-newline", ",".join(map(str, ids))])
    assert out == SAMPLE  # commas separate ids too

    # Several words as separate arguments are one text, joined by spaces.
    rc, out, _ = _run(["tokenizer", "encode", "--tokenizer", str(tok_dir), "to", "be", "or"])
    assert _ids(out) == tok.encode("to be or")


def test_encode_and_decode_read_stdin(tok_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = get_tokenizer(tok_dir)
    text = SHAKESPEARE[:300]
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    rc, out, err = _run(["tokenizer", "encode", "--tokenizer", str(tok_dir)])
    assert rc == 0, err
    ids = _ids(out)
    assert ids == tok.encode(text)
    monkeypatch.setattr(sys, "stdin", io.StringIO(", ".join(map(str, ids)) + "\n"))
    rc, out, err = _run(["tokenizer", "decode", "--tokenizer", str(tok_dir), "--no-newline"])
    assert rc == 0, err
    assert out == text


def test_allow_special_turns_endoftext_into_its_id(tok_dir: Path) -> None:
    tok = get_tokenizer(tok_dir)
    eot = tok.special_tokens[ENDOFTEXT]
    text = f"end{ENDOFTEXT}start"
    _, plain, _ = _run(["tokenizer", "encode", "--tokenizer", str(tok_dir), text])
    assert eot not in _ids(plain)
    assert _ids(plain) == tok.encode(text)
    _, special, _ = _run(["tokenizer", "encode", "--tokenizer", str(tok_dir), "--allow-special", text])
    assert _ids(special) == [*tok.encode("end"), eot, *tok.encode("start")]


@pytest.mark.parametrize("kind", ["byte", "char"])
def test_allow_special_with_a_tokenizer_without_specials(kind: str, tmp_path: Path) -> None:
    text = "to be, or not"
    spec = "byte"
    if kind == "char":
        CharTokenizer.train(text).save(tmp_path / "char")
        spec = str(tmp_path / "char")
    tok = get_tokenizer(spec)
    assert tok.special_tokens == {}
    rc, out, err = _run(["tokenizer", "encode", "--tokenizer", spec, "--allow-special", text])
    if rc == 0:  # nothing to allow: the ordinary ids
        assert _ids(out) == tok.encode(text)
    else:  # or a one-line user error
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ show / export-hf


def test_show_compares_two_tokenizers(tok_dir: Path, fixtures: Path) -> None:
    gpt2_dir = fixtures / "tokenizers" / "gpt2"
    rc, out, err = _run(
        ["tokenizer", "show", "--tokenizer", str(tok_dir), "--tokenizer", str(gpt2_dir), "--no-color", SAMPLE]
    )
    assert rc == 0, err
    assert "\x1b[" not in out
    ours, gpt2 = get_tokenizer(tok_dir), get_tokenizer(gpt2_dir)
    header_ours = f"== {tok_dir} (vocab {ours.vocab_size:,})"
    header_gpt2 = f"== {gpt2_dir} (vocab {gpt2.vocab_size:,})"
    assert out.index(header_ours) < out.index(header_gpt2)
    counts = [int(n) for n in re.findall(r"^(\d+) tokens, ", out, flags=re.MULTILINE)]
    assert counts == [len(ours.encode(SAMPLE)), len(gpt2.encode(SAMPLE))]
    assert counts[0] != counts[1]
    n_bytes = len(SAMPLE.encode("utf-8"))
    assert f"{len(SAMPLE)} characters, {n_bytes} bytes" in out
    gpt2_part = out[out.index(header_gpt2) :]
    assert " ".join(map(str, gpt2.encode(SAMPLE))) in gpt2_part.splitlines()


def test_export_hf_writes_a_loadable_tokenizer_json(tok_dir: Path, tmp_path: Path) -> None:
    tok = get_tokenizer(tok_dir)
    target = tmp_path / "exported.json"
    rc, out, err = _run(["tokenizer", "export-hf", "--tokenizer", str(tok_dir), "--out", str(target)])
    assert rc == 0, err
    assert out.strip() == str(target)
    hf = HFTokenizer.from_file(str(target))
    assert hf.encode(SAMPLE).ids == tok.encode(SAMPLE)
    assert hf.get_vocab_size() == tok.vocab_size
    # A directory gets tokenizer.json inside it.
    folder = tmp_path / "folder"
    folder.mkdir()
    rc, out, _ = _run(["tokenizer", "export-hf", "--tokenizer", str(tok_dir), "--out", str(folder)])
    assert rc == 0
    assert out.strip() == str(folder / "tokenizer.json")
    assert json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")) == json.loads(
        target.read_text(encoding="utf-8")
    )


def test_export_hf_refuses_a_non_bpe_tokenizer(tmp_path: Path) -> None:
    line = _error(
        ["tokenizer", "export-hf", "--tokenizer", "byte", "--out", str(tmp_path / "t.json")], "tokenizer export-hf"
    )
    assert "only byte-level BPE" in line and "'byte'" in line
    assert not (tmp_path / "t.json").exists()


# ------------------------------------------------------------------------------------------------ kiln tokenize

SUMMARY_LINE = re.compile(
    r"^([\d,]+) documents, ([\d,]+) tokens \(train ([\d,]+), val ([\d,]+)\), ([\d,.]+) MB of text, "
    r"([\d.]+) bytes/token$",
    flags=re.MULTILINE,
)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_tokenize_prints_counts_that_match_the_summary(tok_dir: Path, tmp_path: Path) -> None:
    docs = [f"Document {i}: " + SHAKESPEARE[i * 500 : i * 500 + 300 + i].strip() for i in range(120)]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    out_dir = tmp_path / "tokens"
    argv = ["tokenize", str(jsonl), "--tokenizer", str(tok_dir), "--out", str(out_dir), "--quiet"]
    argv += ["--workers", "1", "--val-fraction", "0.1", "--part-mb", "0.01"]
    rc, out, err = _run(argv)
    assert rc == 0, err
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    m = SUMMARY_LINE.search(out)
    assert m, out
    assert _number(m.group(1)) == summary["documents"] == len(docs)
    assert _number(m.group(2)) == summary["tokens"]
    assert (_number(m.group(3)), _number(m.group(4))) == (summary["train_tokens"], summary["val_tokens"])
    assert m.group(5) == f"{summary['text_bytes'] / 1e6:,.1f}"
    assert summary["text_bytes"] == sum(len(d.encode("utf-8")) for d in docs)
    assert m.group(6) == f"{summary['bytes_per_token']:.2f}"
    assert f"{summary['parts']} parts (0 already done)" in out
    assert summary["parts"] > 1
    assert "note:" not in out

    rc, again, _ = _run(argv)  # the same command again: everything is already done
    assert rc == 0
    assert f"{summary['parts']} parts ({summary['parts']} already done)" in again
    assert SUMMARY_LINE.search(again).group(0) == m.group(0)


def test_tokenize_notes_replaced_bytes_and_skipped_records(tok_dir: Path, tmp_path: Path) -> None:
    data = SHAKESPEARE[:30_000].encode("utf-8")
    data = data[:1000] + b"\xff\xfe caf\xe9 " + data[1000:20_000] + b"\xc3\x28" + data[20_000:]
    expected = len(data) - len(data.decode("utf-8", errors="ignore").encode("utf-8"))
    txt = tmp_path / "latin.txt"
    txt.write_bytes(data)
    jsonl = tmp_path / "some_bad.jsonl"
    jsonl.write_text('{"text": "fine"}\n{oops\n{"text": "also fine"}\n', encoding="utf-8")
    out_dir = tmp_path / "tokens"
    argv = ["tokenize", str(txt), str(jsonl), "--tokenizer", str(tok_dir), "--out", str(out_dir), "--quiet"]
    rc, out, err = _run([*argv, "--workers", "1", "--val-fraction", "0.2"])
    assert rc == 0, err
    assert f"note: {expected:,} bytes were not valid UTF-8 and were read as U+FFFD" in out
    assert f"note: skipped 1 records, e.g. {jsonl}" in out
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["replaced_bytes"] == expected
    assert summary["documents"] == 3


# ------------------------------------------------------------------------------------------------ errors


def test_tokenize_an_empty_corpus_exits_2(tok_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n   \n", encoding="utf-8")
    line = _error(
        ["tokenize", str(empty), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "o"), "--quiet"], "tokenize"
    )
    assert "empty" in line and str(empty) in line


def test_tokenize_bad_settings_exit_2(tok_dir: Path, corpus: Path, tmp_path: Path) -> None:
    base = ["tokenize", str(corpus), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "o"), "--quiet"]
    assert "val_fraction" in _error([*base, "--val-fraction", "1.0"], "tokenize")
    assert "workers" in _error([*base, "--workers", "-1"], "tokenize")
    assert "not found" in _error(["tokenize", str(tmp_path / "nope.txt"), *base[2:]], "tokenize")


def test_tokenizer_train_errors_exit_2(corpus: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "t")
    line = _error(
        ["tokenizer", "train", str(corpus), "--out", out, "--vocab-size", "100", "--quiet"], "tokenizer train"
    )
    assert "vocab_size 100 is too small" in line
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert "empty corpus" in _error(["tokenizer", "train", str(empty), "--out", out, "--quiet"], "tokenizer train")
    bad_pattern = ["tokenizer", "train", str(corpus), "--out", out, "--pattern", "(unclosed", "--quiet"]
    assert "split pattern" in _error(bad_pattern, "tokenizer train")
    assert not Path(out).exists()


def test_unknown_tokenizer_and_bad_ids_exit_2(tok_dir: Path, tmp_path: Path) -> None:
    line = _error(["tokenizer", "encode", "--tokenizer", "no-such-vocab", "hi"], "tokenizer encode")
    assert "unknown tokenizer 'no-such-vocab'" in line and "cl100k_base" in line
    line = _error(["tokenizer", "decode", "--tokenizer", str(tok_dir), "12", "x7", "3"], "tokenizer decode")
    assert "token ids must be integers" in line and "x7" in line
    (tmp_path / "not_a_tokenizer").mkdir()
    line = _error(["tokenizer", "encode", "--tokenizer", str(tmp_path / "not_a_tokenizer"), "hi"], "tokenizer encode")
    assert "holds no tokenizer" in line


def test_a_pretrained_name_offline_exits_2(
    tok_dir: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cached file and no reachable server (a closed local port): a clear one-line error, not a traceback."""
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.delenv("KILN_VOCAB_DIR", raising=False)
    for name in ("cl100k_base", "r50k_base"):
        spec = pretrained_module.PRETRAINED[name]
        monkeypatch.setitem(pretrained_module.PRETRAINED, name, dataclasses.replace(spec, url="http://127.0.0.1:9/x"))

    line = _error(["tokenizer", "encode", "--tokenizer", "cl100k_base", "hi"], "tokenizer encode")
    assert "could not fetch the cl100k_base vocabulary" in line and "offline?" in line
    # "gpt2" (the alias of r50k_base, and kiln tokenize's default) fails the same way.
    line = _error(["tokenize", str(corpus), "--tokenizer", "gpt2", "--out", str(tmp_path / "o"), "--quiet"], "tokenize")
    assert "could not fetch the r50k_base vocabulary" in line
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "o").exists()
