"""Tests for kiln.tokenize.tokenize_corpus (`kiln tokenize`): a corpus of .jsonl/.txt/.parquet documents into
train/val token shards that decode back to exactly the input documents; deterministic across worker counts;
resumable after a lost part or a real `kill -9`; refusing to mix runs; clear errors; and shards `kiln train` reads."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import TINY_TRAIN
from kiln.cli import main
from kiln.config import load_config, to_dict
from kiln.model.checkpoint import load_checkpoint, resolve_checkpoint
from kiln.tokenize import TokenizeConfig, TokenizeSummary, run_tokenize
from kiln.tokenize.corpus import find_inputs
from kiln.tokenize.shards import open_shard, read_header
from kiln.tokenize.tokenize_corpus import PART_COUNTS
from kiln.tokenizer import BPETokenizer, ByteTokenizer, get_tokenizer, load_tokenizer, train_bpe
from kiln.tokenizer.bpe import RANKS_FILE
from kiln.train.data import bundled_text, open_shard_dir

SEP = "<|endoftext|>"
SHAKESPEARE = bundled_text()
WORDS = ["the", "cat", "sat", "on", "a", "mat", "café", "naïve", "東京", "and", "then", "slept", "42", "ran", "😀"]
COUNTS = (
    *PART_COUNTS,
    "tokens",
    "bytes_per_token",
    "vocab_size",
    "parts",
)
TIMEOUT = 60
KILL_AFTER = 20  # parts done before the kill (of ~210: the job is killed well before its end)


def _docs(n: int, seed: int, prefix: str) -> list[str]:
    """n distinct stripped documents of random words (some multi-byte), some with inner newlines."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        if i % 4 == 0:
            body = body.replace(" and ", ".\nAnd ", 1)
        docs.append(f"{prefix} {i}: {body}.")
    return docs


def _write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def _run(**kwargs) -> dict:
    """`kiln tokenize` without a progress bar; the summary as the dict summary.json holds."""
    return run_tokenize(TokenizeConfig(quiet=True, **kwargs)).to_json()


def _shards(out: Path) -> dict[str, bytes]:
    """Every shard file's bytes, by name."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}


def _mtimes(out: Path) -> dict[str, int]:
    files = [*out.glob("*.bin"), *(out / "parts").glob("*.json")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


def _split_docs(out: Path, split: str, tok: BPETokenizer) -> list[str]:
    """The texts between <|endoftext|> ids in a split's shards (each shard must end with one)."""
    eot = tok.eot_id
    assert eot is not None
    docs = []
    for path in sorted(out.glob(f"{split}_*.bin")):
        ids = np.asarray(open_shard(path))
        assert ids.size and ids[-1] == eot, f"{path.name} does not end with <|endoftext|>"
        cuts = np.flatnonzero(ids == eot)
        start = 0
        for cut in cuts:
            assert cut > start, f"{path.name}: an empty document between separators"
            docs.append(tok.decode(ids[start:cut].tolist()))
            start = cut + 1
    return docs


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BPETokenizer]:
    """A small BPE vocabulary with <|endoftext|>, saved where TokenizeConfig(tokenizer=...) can load it."""
    directory = tmp_path_factory.mktemp("tok") / "bpe512"
    tok = train_bpe([SHAKESPEARE], 512)
    tok.save(directory)
    return directory, tok


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A directory of 40 JSONL docs, 30 separator-split .txt docs and 30 Parquet rows (3 row groups); all
    documents in the order `kiln tokenize` reads the files (sorted names)."""
    root = tmp_path_factory.mktemp("mixed")
    jsonl_docs, txt_docs, pq_docs = _docs(40, 1, "Json"), _docs(30, 2, "Text"), _docs(30, 3, "Table")
    _write_jsonl(root / "a_docs.jsonl", jsonl_docs)
    (root / "b_stories.txt").write_text(
        "".join(f"{d}\n{SEP}\n" if i % 2 else f"  {d}{SEP}" for i, d in enumerate(txt_docs)), encoding="utf-8"
    )
    pq.write_table(pa.table({"text": pq_docs, "n": list(range(30))}), root / "c_table.parquet", row_group_size=10)
    return root, jsonl_docs + txt_docs + pq_docs


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """1500 short JSONL documents (~260 KB): many parts at a small part_mb."""
    docs = _docs(1500, 4, "Many")
    return _write_jsonl(tmp_path_factory.mktemp("many") / "many.jsonl", docs), docs


# ------------------------------------------------------------------------------------------------ output


def test_mixed_corpus_round_trips_every_document_exactly_once(
    mixed: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    root, docs = mixed
    tok_dir, tok = bpe
    out = tmp_path / "out"
    summary = _run(
        inputs=[str(root)], out_dir=str(out), tokenizer=str(tok_dir), workers=1, val_fraction=0.1, separator=SEP
    )

    assert (out / "plan.json").is_file() and (out / "summary.json").is_file()
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    train_files, val_files = sorted(out.glob("train_*.bin")), sorted(out.glob("val_*.bin"))
    assert train_files and val_files
    shards = open_shard_dir(out)
    assert shards.train == train_files and shards.val == val_files
    assert isinstance(shards.tokenizer, BPETokenizer)
    assert shards.tokenizer.ranks == tok.ranks and shards.tokenizer.special_tokens == tok.special_tokens

    train_docs, val_docs = _split_docs(out, "train", tok), _split_docs(out, "val", tok)
    assert Counter(train_docs + val_docs) == Counter(docs)  # none lost, none duplicated, none altered
    assert not set(train_docs) & set(val_docs)
    assert 0 < len(val_docs) < len(docs) / 2

    train = [np.asarray(open_shard(p)) for p in train_files]
    val = [np.asarray(open_shard(p)) for p in val_files]
    n_train, n_val = sum(a.size for a in train), sum(a.size for a in val)
    n_eot = sum(int((a == tok.eot_id).sum()) for a in train + val)
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert summary["documents"] == len(docs)
    assert summary["separators"] == n_eot == len(docs)
    assert (summary["train_tokens"], summary["val_tokens"]) == (n_train, n_val)
    assert summary["tokens"] == n_train + n_val == sum(len(tok.encode(d)) for d in docs) + len(docs)
    assert summary["text_bytes"] == text_bytes
    assert summary["bytes_per_token"] == pytest.approx(text_bytes / (n_train + n_val - n_eot))
    assert summary["vocab_size"] == tok.vocab_size
    assert summary["replaced_bytes"] == summary["skipped_records"] == 0
    assert summary["parts_resumed"] == 0
    assert summary["parts"] == len(list((out / "parts").glob("*.json")))
    for path in train_files + val_files:
        assert read_header(path).vocab_size == tok.vocab_size


def test_a_large_vocabulary_gives_uint32_shards(mixed: tuple[Path, list[str]], fixtures: Path, tmp_path: Path) -> None:
    root, docs = mixed
    spec = fixtures / "tokenizers" / "cl100k_base.tiktoken"
    tok = get_tokenizer(spec)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size > 2**16
    out = tmp_path / "out"
    summary = _run(
        inputs=[str(root)], out_dir=str(out), tokenizer=str(spec), workers=1, val_fraction=0.1, separator=SEP
    )
    for path in out.glob("*.bin"):
        header = read_header(path)
        assert header.dtype.itemsize == 4 and header.vocab_size == tok.vocab_size
    assert Counter(_split_docs(out, "train", tok) + _split_docs(out, "val", tok)) == Counter(docs)
    assert summary["tokens"] == sum(len(tok.encode(d)) for d in docs) + len(docs)
    loaded = open_shard_dir(out).tokenizer
    assert isinstance(loaded, BPETokenizer) and loaded.ranks == tok.ranks and loaded.name == "cl100k_base"


def test_worker_count_does_not_change_the_shards(
    many: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    corpus, docs = many
    tok_dir, tok = bpe
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        summary = _run(
            inputs=[str(corpus)],
            out_dir=str(out),
            tokenizer=str(tok_dir),
            workers=workers,
            val_fraction=0.05,
            part_mb=0.02,
        )
        runs[workers] = (_shards(out), {k: summary[k] for k in COUNTS})
    assert runs[1][1]["parts"] >= 6
    assert runs[1] == runs[2]

    # The val split holds about val_fraction of the documents (systematic sampling: off by < 1 per part).
    out = tmp_path / "w1"
    train_docs, val_docs = _split_docs(out, "train", tok), _split_docs(out, "val", tok)
    assert Counter(train_docs + val_docs) == Counter(docs)
    assert abs(len(val_docs) - 0.05 * len(docs)) <= runs[1][1]["parts"] + 1
    assert len(val_docs) > 0


def test_the_same_corpus_in_another_directory_gives_the_same_shards(
    many: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    """The val split depends on the corpus, not on where it lies (it once hashed the path: a copied corpus, or
    a test fixture rebuilt in a new temp dir, trained on a different split)."""
    corpus, _ = many
    tok_dir, _ = bpe
    copy = tmp_path / "elsewhere" / corpus.name
    copy.parent.mkdir()
    copy.write_bytes(corpus.read_bytes())
    shards = []
    for i, source in enumerate((corpus, copy)):
        out = tmp_path / f"out{i}"
        _run(inputs=[str(source)], out_dir=str(out), tokenizer=str(tok_dir), workers=1, val_fraction=0.05, part_mb=0.02)
        shards.append(_shards(out))
    assert shards[0] == shards[1]
    assert any(name.startswith("val_") for name in shards[0])


def test_tiny_shakespeare_alone_gets_a_val_split(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    tok_dir, tok = bpe
    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text(SHAKESPEARE, encoding="utf-8")
    out = tmp_path / "out"
    summary = _run(inputs=[str(corpus)], out_dir=str(out), tokenizer=str(tok_dir), workers=1)
    assert TokenizeConfig(inputs=[], tokenizer="byte").val_fraction == 0.02
    assert summary["documents"] == 1
    assert summary["val_tokens"] > 0 and list(out.glob("val_*.bin"))
    assert summary["train_tokens"] > 20 * summary["val_tokens"]
    pieces = _split_docs(out, "train", tok) + _split_docs(out, "val", tok)
    assert all(piece in SHAKESPEARE for piece in pieces)  # segments of the one text, never altered
    assert sum(len(piece) for piece in pieces) == len(SHAKESPEARE)  # ... and none lost or repeated
    assert summary["text_bytes"] == len(SHAKESPEARE.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ resume


def _many_parts(many: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], out: Path) -> dict:
    """A config that cuts the `many` corpus into many small parts (for the resume tests)."""
    corpus, _ = many
    tok_dir, _ = bpe
    return dict(
        inputs=[str(corpus)], out_dir=str(out), tokenizer=str(tok_dir), workers=1, val_fraction=0.05, part_mb=0.02
    )


def test_rerun_redoes_only_the_missing_part_and_nothing_when_done(
    many: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = _many_parts(many, bpe, out)
    first = _run(**cfg)
    before = _shards(out)
    n = first["parts"]
    assert n >= 6

    (out / "parts" / "000003.json").unlink()
    removed = [p for p in (out / "train_000003.bin", out / "val_000003.bin") if p.exists()]
    assert removed
    for path in removed:
        path.unlink()
    second = _run(**cfg)
    assert second["parts_resumed"] == n - 1
    assert _shards(out) == before
    assert {k: second[k] for k in COUNTS} == {k: first[k] for k in COUNTS}

    mtimes = _mtimes(out)
    third = _run(**{**cfg, "workers": 2})  # the worker count is not part of the job: still a resume
    assert third["parts_resumed"] == n
    assert _mtimes(out) == mtimes  # no shard or marker rewritten
    assert {k: third[k] for k in COUNTS} == {k: first[k] for k in COUNTS}


def test_a_lost_or_truncated_shard_is_redone_even_with_its_marker(
    many: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = _many_parts(many, bpe, out)
    first = _run(**cfg)
    before = _shards(out)
    (out / "train_000001.bin").unlink()  # marker kept, shard lost
    damaged = out / "train_000002.bin"
    damaged.write_bytes(damaged.read_bytes()[:-2])  # marker kept, shard truncated
    second = _run(**cfg)
    assert second["parts_resumed"] == first["parts"] - 2
    assert _shards(out) == before
    assert {k: second[k] for k in COUNTS} == {k: first[k] for k in COUNTS}


def test_the_resolved_config_repeats_the_run_and_no_reader_takes_it_for_data(
    many: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    """The run leaves kiln-tokenize.toml in out_dir: the config as given (segment_kb not narrowed), which run again
    (with a progress bar this time: quiet is not part of the job) resumes every part. Neither `kiln tokenize` on the
    directory nor `kiln train`'s shard reader reads it."""
    out = tmp_path / "out"
    cfg = TokenizeConfig(quiet=True, **_many_parts(many, bpe, out))
    first = run_tokenize(cfg)
    path = out / "kiln-tokenize.toml"
    ran = load_config(TokenizeConfig, path)
    assert to_dict(ran) == to_dict(cfg)
    ran.quiet = False
    again = run_tokenize(ran)
    assert isinstance(again, TokenizeSummary) and again.parts_resumed == first.parts
    assert {k: getattr(again, k) for k in COUNTS} == {k: getattr(first, k) for k in COUNTS}
    (tmp_path / "notes.txt").write_text("a corpus file beside the output", encoding="utf-8")
    assert find_inputs([str(tmp_path)]) == [tmp_path / "notes.txt"]
    assert open_shard_dir(out).train == sorted(out.glob("train_*.bin"))


def test_the_summary_renders_what_the_command_prints(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    """TokenizeSummary.render() (built from summary.json) is, line for line, what `kiln tokenize` prints."""
    tok_dir, _ = bpe
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "latin.txt").write_bytes(b"caf\xe9 ok " + SHAKESPEARE[:50_000].encode("utf-8"))
    (corpus / "docs.jsonl").write_text("{}\n" + json.dumps({"text": SHAKESPEARE[50_000:]}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["tokenize", str(corpus), "--tokenizer", str(tok_dir), "--out", str(out), "--quiet"])
    assert rc == 0
    summary = TokenizeSummary(**json.loads((out / "summary.json").read_text(encoding="utf-8")))
    assert summary.skipped_records == 1 and summary.replaced_bytes == 1
    assert summary.render() + "\n" == stdout.getvalue()


def test_kill_9_mid_run_then_rerun_gives_the_clean_run_shards(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    """A real `python -m kiln tokenize` process SIGKILLed after it finished some parts, then run again to the end,
    writes exactly the shards and counts of a run that was never interrupted."""
    tok_dir, _ = bpe
    corpus = tmp_path / "big.txt"
    corpus.write_text(SHAKESPEARE * 6, encoding="utf-8")
    args = dict(inputs=[str(corpus)], tokenizer=str(tok_dir), workers=1, part_mb=0.03)
    clean_out = tmp_path / "clean"
    clean = _run(**args, out_dir=str(clean_out))
    assert clean["parts"] > 100

    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "kiln", "tokenize", str(corpus), "--tokenizer", str(tok_dir), "--out", str(out)]
    argv += ["--workers", "1", "--part-mb", "0.03", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(list((out / "parts").glob("*.json"))) < KILL_AFTER:
            if proc.poll() is not None:
                pytest.fail(f"kiln tokenize exited ({proc.returncode}) before {KILL_AFTER} parts were done")
            if time.monotonic() > deadline:
                pytest.fail(f"kiln tokenize did not finish {KILL_AFTER} parts in {TIMEOUT} s")
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text(errors="replace")
    done = len(list((out / "parts").glob("*.json")))
    assert KILL_AFTER <= done < clean["parts"], "the job was not killed in the middle: make the corpus bigger"
    assert not (out / "summary.json").exists()

    resumed = _run(**args, out_dir=str(out))
    assert resumed["parts_resumed"] == done
    assert _shards(out) == _shards(clean_out)
    assert {k: resumed[k] for k in COUNTS} == {k: clean[k] for k in COUNTS}


# ------------------------------------------------------------------------------------------------ refusing to mix


def test_other_settings_or_tokenizer_in_the_same_dir_need_overwrite(
    mixed: tuple[Path, list[str]], bpe: tuple[Path, BPETokenizer], tmp_path: Path
) -> None:
    root, docs = mixed
    tok_dir, _ = bpe
    out = tmp_path / "out"
    cfg = dict(
        inputs=[str(root)],
        out_dir=str(out),
        tokenizer=str(tok_dir),
        workers=1,
        val_fraction=0.1,
        separator=SEP,
        part_mb=0.002,
    )
    first = _run(**cfg)
    before = _shards(out)
    assert first["parts"] > 3

    for change in ({"val_fraction": 0.2}, {"tokenizer": "byte"}, {"separator": None}, {"part_mb": 1.0}):
        with pytest.raises(ValueError, match="different corpus, tokenizer or settings"):
            _run(**{**cfg, **change})
        assert _shards(out) == before  # untouched by the refused run

    summary = _run(**{**cfg, "tokenizer": "byte", "part_mb": 1.0, "overwrite": True})
    assert summary["parts"] < first["parts"]
    assert summary["parts_resumed"] == 0
    names = {p.name for p in out.glob("*.bin")}
    indices = {int(name.split("_")[1].removesuffix(".bin")) for name in names}
    assert indices <= set(range(summary["parts"]))  # no shard left over from the earlier, longer plan
    assert len(list((out / "parts").glob("*.json"))) == summary["parts"]
    for path in out.glob("*.bin"):
        assert read_header(path).vocab_size == 256
    assert isinstance(load_tokenizer(out / "tokenizer"), ByteTokenizer)
    assert not (out / "tokenizer" / RANKS_FILE).exists()
    assert summary["tokens"] == summary["text_bytes"] == sum(len(d.encode("utf-8")) for d in docs)


def test_changed_input_or_foreign_shards_need_overwrite(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    tok_dir, _ = bpe
    corpus = _write_jsonl(tmp_path / "docs.jsonl", _docs(200, 5, "Doc"))
    out = tmp_path / "out"
    cfg = dict(inputs=[str(corpus)], out_dir=str(out), tokenizer=str(tok_dir), workers=1, val_fraction=0.1)
    _run(**cfg)
    with corpus.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "one more document"}) + "\n")
    with pytest.raises(ValueError, match="different corpus"):
        _run(**cfg)
    assert _run(**cfg, overwrite=True)["documents"] == 201

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.bin").write_bytes(b"not kiln's")
    with pytest.raises(ValueError, match="not written by kiln tokenize"):
        _run(**{**cfg, "out_dir": str(foreign)})
    _run(**{**cfg, "out_dir": str(foreign), "overwrite": True})
    assert not (foreign / "train.bin").exists()
    open_shard_dir(foreign)


# ------------------------------------------------------------------------------------------------ errors and odd input


@pytest.mark.parametrize("content", ["", "\n  \n\n", "SEP"], ids=["empty-txt", "blank-jsonl", "only-separators"])
def test_an_empty_corpus_is_an_error(content: str, bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    tok_dir, _ = bpe
    if content == "SEP":
        path = tmp_path / "seps.txt"
        path.write_text(f"{SEP}\n{SEP}  {SEP}", encoding="utf-8")
    else:
        path = tmp_path / ("empty.txt" if not content else "blank.jsonl")
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="empty") as exc:
        _run(inputs=[str(path)], out_dir=str(tmp_path / "out"), tokenizer=str(tok_dir), workers=1, separator=SEP)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("val_fraction", 1.0, "val_fraction"),
        ("val_fraction", -0.1, "val_fraction"),
        ("workers", -1, "workers"),
        ("part_mb", 0.0, "part_mb"),
        ("segment_kb", 0, "segment_kb"),
        ("text_field", "", "text_field"),
        ("separator", "", "separator"),
        ("inputs", [], "at least one"),
    ],
)
def test_invalid_settings_are_value_errors(field: str, value: object, message: str, tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n", encoding="utf-8")
    cfg = TokenizeConfig(inputs=[str(corpus)], out_dir=str(tmp_path / "out"), tokenizer="byte")
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        run_tokenize(cfg)
    assert not (tmp_path / "out").exists()


def test_non_utf8_input_is_counted_and_tokenized(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    tok_dir, tok = bpe
    good = SHAKESPEARE[:20_000].encode("utf-8")
    data = good[:5000] + b"caf\xe9 ok\xff\xfe " + good[5000:12000] + b"\xc3\x28 \xe2\x82 " + good[12000:]
    expected = len(data) - len(data.decode("utf-8", errors="ignore").encode("utf-8"))
    path = tmp_path / "latin.txt"
    path.write_bytes(data)
    out = tmp_path / "out"
    summary = _run(inputs=[str(path)], out_dir=str(out), tokenizer=str(tok_dir), workers=1, val_fraction=0.2)
    assert summary["replaced_bytes"] == expected > 0
    text = data.decode("utf-8", errors="replace")
    assert summary["text_bytes"] == len(text.encode("utf-8"))
    pieces = _split_docs(out, "train", tok) + _split_docs(out, "val", tok)
    assert sum(piece.count("\ufffd") for piece in pieces) == text.count("\ufffd")


def test_skipped_records_are_summarised(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    tok_dir, _ = bpe
    docs = _docs(50, 6, "Ok")
    lines = [json.dumps({"text": d}) for d in docs]
    lines[10:10] = ["{broken", '{"body": "x"}']
    path = tmp_path / "some_bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = _run(
        inputs=[str(path)], out_dir=str(tmp_path / "out"), tokenizer=str(tok_dir), workers=1, val_fraction=0.1
    )
    assert summary["documents"] == len(docs)
    assert summary["skipped_records"] == 2
    assert len(summary["problems"]) == 2 and all(str(path) in p for p in summary["problems"])


def test_a_tokenizer_without_endoftext_concatenates_documents(mixed: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, docs = mixed
    out = tmp_path / "out"
    summary = _run(inputs=[str(root)], out_dir=str(out), tokenizer="byte", workers=1, val_fraction=0.0, separator=SEP)
    assert ByteTokenizer().special_tokens == {}
    train = b"".join(np.asarray(open_shard(p)).astype(np.uint8).tobytes() for p in sorted(out.glob("train_*.bin")))
    assert train == "".join(docs).encode("utf-8")
    assert not list(out.glob("val_*.bin"))
    assert summary["separators"] == 0
    assert summary["tokens"] == summary["text_bytes"] == len(train)
    assert summary["bytes_per_token"] == 1.0
    assert summary["documents"] == len(docs)


# ------------------------------------------------------------------------------------------------ end to end


def test_kiln_train_reads_the_shards_and_keeps_the_tokenizer(bpe: tuple[Path, BPETokenizer], tmp_path: Path) -> None:
    tok_dir, tok = bpe
    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text(SHAKESPEARE, encoding="utf-8")
    data, run = tmp_path / "tokens", tmp_path / "run"
    _run(inputs=[str(corpus)], out_dir=str(data), tokenizer=str(tok_dir), workers=1)
    argv = ["train", f"data={data}", *TINY_TRAIN, "max_steps=3", "eval_interval=3", f"out_dir={run}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    assert rc == 0, err.getvalue()[-3000:]
    assert "after 3 steps" in out.getvalue()
    model, loaded, _ = load_checkpoint(resolve_checkpoint(run))
    assert isinstance(loaded, BPETokenizer)
    assert loaded.ranks == tok.ranks
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.vocab_size == tok.vocab_size == model.config.vocab_size
