"""Messages that blame the real cause: an unreachable host is a network failure (not "robots.txt disallows"), a
corpus with text that is not Unicode is the corpus's fault (not the split pattern's), and a 50 MB one-line text
in `kiln tokenize` works, or fails naming a real option, without leaving shards behind."""

from __future__ import annotations

import functools
import json
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import kiln
from helpers import FIXTURES, run_cli
from kiln.tokenize.corpus import cut_segments
from kiln.tokenize.shards import open_shard
from kiln.tokenizer import get_tokenizer, train_bpe

SHAKESPEARE = (Path(kiln.__file__).parent / "assets" / "tinyshakespeare.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ crawl


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def site(tmp_path: Path):
    """A real server on 127.0.0.1 with one page (no robots.txt: a 404, which means no rules)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<html><body><p>hello</p></body></html>", encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _crawl(out: Path, *seeds: str) -> tuple[int, str, dict]:
    argv = ["crawl", *seeds, "--out", str(out), "--quiet", "--retries", "1", "--backoff", "0.05"]
    rc, _, err = run_cli(argv)
    return rc, err, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_an_unreachable_host_is_a_network_failure_not_robots(tmp_path: Path) -> None:
    port = _closed_port()
    rc, err, summary = _crawl(tmp_path / "out", f"http://127.0.0.1:{port}/")
    assert rc == 2, err
    assert "Traceback" not in err and "unreachable" in err and "robots.txt disallows" not in err, err
    assert summary["skipped"] == {}
    assert list(summary["failed"]) == [f"127.0.0.1:{port} did not answer (connection refused)"], summary
    assert summary["retries"] == 1  # retried like any network error


def test_an_unreachable_host_beside_a_live_one_is_counted_as_failed(site: str, tmp_path: Path) -> None:
    port = _closed_port()
    rc, err, summary = _crawl(tmp_path / "out", site, f"http://127.0.0.1:{port}/")
    assert rc == 0, err
    assert summary["pages"] == 1 and summary["skipped"] == {}
    assert summary["failed"] == {f"127.0.0.1:{port} did not answer (connection refused)": 1}


# ------------------------------------------------------------------------------------------------ tokenizer train


def test_a_lone_surrogate_in_a_jsonl_corpus_is_replaced_and_counted(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"text": "abc \\ud800 def"}\n{"text": "hello world, hello"}\n', encoding="utf-8")
    out = tmp_path / "tok"
    rc, stdout, err = run_cli(["tokenizer", "train", str(corpus), "--out", str(out), "--vocab-size", "300", "--quiet"])
    assert rc == 0, err
    assert "split pattern" not in err and "were read as U+FFFD" in stdout, stdout


@pytest.mark.parametrize("trainer", ["rustbpe", "reference"])
def test_a_text_that_is_not_unicode_blames_the_corpus_not_the_pattern(trainer: str) -> None:
    with pytest.raises(ValueError, match="not valid Unicode") as info:
        train_bpe(["fine text", "bad \ud800 text"], 300, trainer=trainer)
    assert "pattern" not in str(info.value)


# ------------------------------------------------------------------------------------------------ one-line text


@pytest.fixture(scope="module")
def pattern_tokenizers():
    return {
        "cl100k": get_tokenizer(FIXTURES / "tokenizers" / "cl100k_base.tiktoken"),
        "gpt2-pattern": train_bpe([SHAKESPEARE], 512, pattern="gpt2"),
        "o200k-pattern": train_bpe([SHAKESPEARE], 512, pattern="o200k"),
    }


@pytest.mark.parametrize("name", ["cl100k", "gpt2-pattern", "o200k-pattern"])
def test_a_one_line_text_is_cut_between_words_without_changing_tokens(name: str, pattern_tokenizers: dict) -> None:
    tok = pattern_tokenizers[name]
    text = " ".join(SHAKESPEARE[:300_000].split())  # one line: punctuation, capitals, digits, no newline
    pieces = cut_segments(text, 10_000)
    assert len(pieces) >= 20 and "".join(pieces) == text
    assert [i for piece in pieces for i in tok.encode(piece)] == tok.encode(text)


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "bpe"
    train_bpe([SHAKESPEARE[:200_000]], 400).save(out)
    return out


def test_a_50_mb_one_line_text_tokenizes_with_a_val_split(small_bpe: Path, tmp_path: Path) -> None:
    words = " ".join(SHAKESPEARE.split())
    text = (words + " ") * (50_000_000 // (len(words) + 1) + 1)
    corpus = tmp_path / "one-line.txt"
    corpus.write_text(text, encoding="utf-8")
    assert corpus.stat().st_size >= 50_000_000 and "\n" not in text
    out = tmp_path / "out"
    rc, _, err = run_cli(["tokenize", str(corpus), "--tokenizer", str(small_bpe), "--out", str(out), "--quiet"])
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["val_tokens"] > 0 and summary["segments"] > 100
    val = np.concatenate([open_shard(p) for p in sorted(out.glob("val_*.bin"))])
    assert val.size == summary["val_tokens"]


def test_a_one_line_text_that_cannot_be_cut_names_a_real_option_and_leaves_no_shards(
    small_bpe: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "blob.txt"
    corpus.write_text("x" * 3_000_000, encoding="utf-8")  # no newline, no space: one segment
    out = tmp_path / "out"
    argv = ["tokenize", str(corpus), "--tokenizer", str(small_bpe), "--out", str(out), "--quiet"]
    rc, _, err = run_cli(argv)
    assert rc == 2 and "Traceback" not in err, err
    assert "--val-fraction" in err and "segment_kb" not in err, err
    assert not list(out.glob("*.bin")) and not (out / "summary.json").exists() and not (out / "parts").exists()
    rc, _, err = run_cli([*argv, "--val-fraction", "0"])  # the option it named works, in the same directory
    assert rc == 0, err
    assert list(out.glob("train_*.bin"))


def test_a_single_segment_that_the_val_sampler_takes_is_an_error_not_an_empty_train_split(
    small_bpe: Path, tmp_path: Path
) -> None:
    # The val sampler's phase is fixed by the file's content: pick a text whose phase sends the one segment to val
    # (at val_fraction 0.5 about every other text does), which used to give rc 0 and no train tokens.
    from kiln.tokenize.corpus import find_inputs, plan_parts
    from kiln.tokenize.tokenize_corpus import _phase

    corpus = tmp_path / "one.txt"
    for i in range(64):
        corpus.write_text(f"a short text of one segment, number {i}", encoding="utf-8")
        if _phase(plan_parts(find_inputs([str(corpus)]), 1 << 20)[0]) >= 0.5:
            break
    out = tmp_path / "out"
    argv = ["tokenize", str(corpus), "--tokenizer", str(small_bpe), "--out", str(out), "--quiet"]
    rc, _, err = run_cli([*argv, "--val-fraction", "0.5"])
    assert rc == 2 and "Traceback" not in err, err
    assert "the train split is empty" in err and "--val-fraction 0" in err, err
    assert not list(out.glob("*.bin")) and not (out / "summary.json").exists()
    rc, _, err = run_cli([*argv, "--val-fraction", "0"])
    assert rc == 0, err
    assert list(out.glob("train_*.bin"))


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_tokenizer_training_on_a_corpus_without_text_names_the_files(kind: str, tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"body": "no text field"}\n{"text": 42}\n', encoding="utf-8")
    rc, _, err = run_cli(["tokenizer", "train", str(corpus), "--out", str(tmp_path / "tok"), "--kind", kind])
    assert rc == 2 and "Traceback" not in err, err
    assert f"no document text in {corpus}" in err and "no string field 'text'" in err, err
    assert "pattern" not in err
