"""Tests for kiln.tokenize.corpus: finding inputs; reading .txt/.md, .jsonl and .parquet documents (plain or
gzipped); non-UTF-8 bytes and bad records; cutting files into parts at places where the tokens cannot change."""

from __future__ import annotations

import gzip
import itertools
import json
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kiln.tokenize.corpus import Part, ReadStats, cut_segments, find_inputs, iter_corpus, plan_parts, read_part
from kiln.tokenizer import BPETokenizer, get_tokenizer, train_bpe
from kiln.train.data import bundled_text

SEP = "<|endoftext|>"
SHAKESPEARE = bundled_text()
WORDS = ["the", "cat", "sat", "on", "a", "mat", "café", "naïve", "東京", "and", "then", "slept", "42", "ran", "😀"]


def _docs(n: int, seed: int = 0, words: tuple[int, int] = (5, 40)) -> list[str]:
    """n distinct, stripped documents of random words (some multi-byte), some with inner newlines."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
        if i % 3 == 0:
            body = body.replace(" then ", "\nthen ", 1)
        docs.append(f"Doc {i}: {body}.")
    return docs


def _write_jsonl(path: Path, records: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _read_parts(
    parts: Sequence[Part], text_field: str = "text", separator: str | None = None
) -> tuple[list[tuple[str, bool]], ReadStats]:
    """Every (text, ends_document) of every part, in order, with the stats summed over the parts."""
    stats = ReadStats()
    items = [item for part in parts for item in read_part(part, stats, text_field, separator)]
    return items, stats


def _invalid_bytes(data: bytes) -> int:
    """How many bytes of `data` are not part of valid UTF-8 (what errors='ignore' drops), computed apart from kiln."""
    return len(data) - len(data.decode("utf-8", errors="ignore").encode("utf-8"))


def _assert_tiles(parts: Sequence[Part], size: int) -> None:
    """The parts' byte ranges cover [0, size) exactly, in order, and only the last one reaches the end."""
    assert [p.index for p in parts] == list(range(len(parts)))
    assert parts[0].start == 0
    assert parts[-1].end == size
    for a, b in itertools.pairwise(parts):
        assert a.end == b.start
    for p in parts:
        assert p.size == p.end - p.start > 0
        assert p.last == (p is parts[-1])


@pytest.fixture(scope="module")
def shakespeare_x3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare3.txt"
    path.write_text(SHAKESPEARE * 3, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shakespeare_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(SHAKESPEARE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizers(fixtures: Path) -> dict[str, BPETokenizer]:
    """OpenAI's cl100k (the fixture file) and small vocabularies trained with the GPT-2 and o200k split patterns."""
    cl100k = get_tokenizer(fixtures / "tokenizers" / "cl100k_base.tiktoken")
    assert isinstance(cl100k, BPETokenizer)
    return {
        "cl100k": cl100k,
        "gpt2-pattern": train_bpe([SHAKESPEARE], 512, pattern="gpt2"),
        "o200k-pattern": train_bpe([SHAKESPEARE], 512, pattern="o200k"),
    }


# ------------------------------------------------------------------------------------------------ find_inputs


def test_find_inputs_walks_directories_sorted_and_keeps_only_supported_files(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    supported = ["a.jsonl", "b/c.md", "b/d/e.txt.gz", "b/f.parquet", "g.jsonl.gz", "h.TXT"]
    unsupported = ["notes.csv", "b/x.parquet.gz", "b/d/readme", "b/y.json"]
    for name in supported + unsupported:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    single = tmp_path / "single.txt"
    single.write_text("hello", encoding="utf-8")

    found = find_inputs([root, single])
    assert found == [*sorted(root / name for name in supported), single]
    # Inputs keep the order they were given in; only the files under one directory are sorted.
    assert find_inputs([str(single), str(root)]) == [single, *found[:-1]]


def test_find_inputs_errors(tmp_path: Path) -> None:
    bad = tmp_path / "data.csv"
    bad.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported file type") as exc:
        find_inputs([bad])
    assert str(bad) in str(exc.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        find_inputs([tmp_path / "missing.txt"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \.txt"):
        find_inputs([empty])
    (empty / "only.csv").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no \.txt"):
        find_inputs([empty])
    with pytest.raises(ValueError, match="no corpus files"):
        find_inputs([])


# ------------------------------------------------------------------------------------------------ reading formats


def test_txt_file_is_one_document_verbatim(tmp_path: Path) -> None:
    text = "\n  First line, with café.\n\nSecond line 東京  \n"
    path = tmp_path / "one.txt"
    path.write_text(text, encoding="utf-8")
    stats = ReadStats()
    assert list(iter_corpus([path], stats)) == [text]  # not stripped: the whole file is the document
    assert stats.documents == 1
    assert stats.bytes == len(text.encode("utf-8"))
    assert stats.replaced_bytes == stats.skipped_records == 0


def test_txt_separator_splits_strips_and_skips_empty_pieces(tmp_path: Path) -> None:
    raw = ["  Once upon a time.\n", "", "\n\nThe end. 😀\n\n", "   \n", "Last one", "\n"]
    path = tmp_path / "stories.md"
    path.write_text(SEP.join(raw), encoding="utf-8")
    stats = ReadStats()
    got = list(iter_corpus([path], stats, separator=SEP))
    expected = [piece.strip() for piece in raw if piece.strip()]
    assert got == expected
    assert len(expected) == 3
    assert stats.documents == len(expected)
    # Without a separator the same file is one document, separators and all.
    assert list(iter_corpus([path])) == [SEP.join(raw)]


def test_jsonl_reads_the_text_field_or_a_named_one(tmp_path: Path) -> None:
    docs = _docs(20)
    bodies = [d.upper() for d in docs]
    path = _write_jsonl(
        tmp_path / "docs.jsonl",
        [{"text": d, "body": b, "id": i} for i, (d, b) in enumerate(zip(docs, bodies, strict=True))],
    )
    stats = ReadStats()
    assert list(iter_corpus([path], stats)) == docs
    assert stats.documents == len(docs)
    assert stats.bytes == path.stat().st_size
    assert list(iter_corpus([path], text_field="body")) == bodies


def test_gzipped_files_read_like_the_plain_ones(tmp_path: Path) -> None:
    docs = _docs(30, seed=1)
    jsonl = _write_jsonl(tmp_path / "docs.jsonl", [{"text": d} for d in docs])
    txt = tmp_path / "docs.txt"
    txt.write_text(SEP.join(docs), encoding="utf-8")
    jsonl_gz, txt_gz = tmp_path / "z.jsonl.gz", tmp_path / "z.txt.gz"
    jsonl_gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    txt_gz.write_bytes(gzip.compress(txt.read_bytes()))

    assert list(iter_corpus([jsonl_gz])) == list(iter_corpus([jsonl])) == docs
    assert list(iter_corpus([txt_gz], separator=SEP)) == list(iter_corpus([txt], separator=SEP)) == docs
    assert list(iter_corpus([txt_gz])) == [txt.read_text(encoding="utf-8")]
    # A gzipped file cannot be cut: it is one part however small the parts are asked to be.
    for path in (jsonl_gz, txt_gz):
        (part,) = plan_parts([path], part_bytes=16)
        assert (part.start, part.end, part.last) == (0, path.stat().st_size, True)
    stats = ReadStats()
    list(iter_corpus([jsonl_gz], stats))
    assert stats.bytes == jsonl.stat().st_size  # counted decompressed


def test_parquet_rows_across_row_groups_with_a_custom_column(tmp_path: Path) -> None:
    docs = _docs(95, seed=2)
    path = tmp_path / "docs.parquet"
    table = pa.table({"id": list(range(len(docs))), "content": docs})
    pq.write_table(table, path, row_group_size=10)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 10

    stats = ReadStats()
    assert list(iter_corpus([path], stats, text_field="content")) == docs
    assert stats.documents == len(docs)
    assert stats.bytes == sum(len(d.encode("utf-8")) for d in docs)

    # Parts are runs of whole row groups of about part_bytes, covering every group once, in order.
    group_bytes = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
    part_bytes = int(2.5 * sum(group_bytes) / len(group_bytes))
    parts = plan_parts([path], part_bytes)
    assert len(parts) > 2
    ends = [meta.num_row_groups if p.end == -1 else p.end for p in parts]
    assert [p.start for p in parts] == [0, *ends[:-1]]
    assert ends[-1] == meta.num_row_groups
    assert [p.last for p in parts] == [False] * (len(parts) - 1) + [True]
    for p, end in zip(parts[:-1], ends[:-1], strict=True):
        assert p.size == sum(group_bytes[p.start : end]) >= part_bytes
    items, _ = _read_parts(parts, text_field="content")
    assert items == [(d, True) for d in docs]


def test_parquet_null_and_empty_rows(tmp_path: Path) -> None:
    path = tmp_path / "holes.parquet"
    pq.write_table(pa.table({"text": ["first", None, "", "second"]}), path)
    stats = ReadStats()
    assert list(iter_corpus([path], stats)) == ["first", "second"]
    assert stats.documents == 2
    assert stats.skipped_records == 1  # the null row; an empty string is simply no document
    assert str(path) in stats.problems[0]


def test_parquet_without_the_column_names_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"body": ["a"], "url": ["u"]}), path)
    with pytest.raises(ValueError, match="no column 'text'") as exc:
        list(iter_corpus([path]))
    message = str(exc.value)
    assert str(path) in message
    assert "body" in message and "url" in message


def test_a_corrupt_parquet_file_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        plan_parts([path], 1 << 20)


# ------------------------------------------------------------------------------------------------ bad input


def test_non_utf8_bytes_become_replacement_characters_and_are_counted(tmp_path: Path) -> None:
    data = "Le café ".encode() + b"caf\xe9 ok\xff\xfe, euro \xe2\x82 cut, \xc3\x28 bad, surrogate \xed\xa0\x80 end.\n"
    expected_count = _invalid_bytes(data)
    assert expected_count >= 8  # the input really is broken in several places
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    stats = ReadStats()
    (text,) = iter_corpus([path], stats)
    assert text == data.decode("utf-8", errors="replace")
    assert "\ufffd" in text and "Le café " in text  # valid multi-byte text is untouched
    assert stats.replaced_bytes == expected_count
    assert stats.bytes == len(data)

    # Inside JSONL strings too (the JSON still parses around them).
    jsonl = tmp_path / "broken.jsonl"
    lines = [b'{"text": "fine"}', b'{"text": "bad \xff byte"}', b'{"text": "two \xc3\xc3 bad"}']
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    stats = ReadStats()
    got = list(iter_corpus([jsonl], stats))
    assert got == ["fine", "bad \ufffd byte", "two \ufffd\ufffd bad"]
    assert stats.replaced_bytes == _invalid_bytes(jsonl.read_bytes()) == 3
    assert stats.skipped_records == 0


def test_replaced_bytes_are_counted_across_parts(tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = []
    for i in range(3000):
        line = f"Line {i} " + " ".join(rng.choice(WORDS) for _ in range(8))
        if rng.random() < 0.05:
            line = line.encode("utf-8") + bytes([rng.choice([0xFF, 0xFE, 0xC0, 0x80])]) + b" x"
        else:
            line = line.encode("utf-8")
        lines.append(line)
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "noisy.txt"
    path.write_bytes(data)
    parts = plan_parts([path], 20_000)
    assert len(parts) > 3
    items, stats = _read_parts(parts)
    assert stats.replaced_bytes == _invalid_bytes(data) > 0
    assert "".join(text for text, _ in items) == data.decode("utf-8", errors="replace")


def test_a_utf8_bom_is_dropped(tmp_path: Path) -> None:
    bom = "\ufeff".encode()
    txt = tmp_path / "bom.txt"
    txt.write_bytes(bom + "héllo wörld\n".encode())
    stats = ReadStats()
    assert list(iter_corpus([txt], stats)) == ["héllo wörld\n"]
    assert stats.replaced_bytes == 0
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(bom + b'{"text": "first"}\n{"text": "second"}\n')
    stats = ReadStats()
    assert list(iter_corpus([jsonl], stats)) == ["first", "second"]  # the first record still parses
    assert stats.skipped_records == 0


def test_bad_jsonl_records_are_skipped_counted_and_named(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    # (line, what it is): a document, a bad record (counted), or nothing (blank line, empty text: not counted).
    lines = [
        ('{"text": "good one"}', "doc"),
        ("{not json", "bad"),
        ('{"title": "no text field"}', "bad"),
        ("", "none"),
        ("   ", "none"),
        ('["a", "list"]', "bad"),
        ('{"text": 5}', "bad"),
        ('{"text": "good two"}', "doc"),
        ('{"text": ""}', "none"),
        ('"just a string"', "bad"),
        ('{"text": null}', "bad"),
        ('{"text": "unterminated"', "bad"),
        ('{"text": "good three"}', "doc"),
    ]
    path.write_text("\n".join(line for line, _ in lines) + "\n", encoding="utf-8")
    stats = ReadStats()
    got = list(iter_corpus([path], stats))
    assert got == [json.loads(line)["text"] for line, kind in lines if kind == "doc"]
    assert stats.documents == len(got)
    assert stats.skipped_records == sum(kind == "bad" for _, kind in lines)
    assert len(stats.problems) == 5  # only the first few are kept
    assert all(str(path) in p for p in stats.problems)
    assert "malformed JSON" in stats.problems[0] and "line 2" in stats.problems[0]
    assert "no string field 'text'" in stats.problems[1] and "line 3" in stats.problems[1]


# ------------------------------------------------------------------------------------------------ plan_parts


def test_plan_parts_small_files_are_one_part_each_indexed_across_files(tmp_path: Path) -> None:
    files = []
    for i, name in enumerate(["a.txt", "b.jsonl", "c.md"]):
        path = tmp_path / name
        path.write_text(json.dumps({"text": f"doc {i}"}) + "\n", encoding="utf-8")
        files.append(path)
    parts = plan_parts(files, part_bytes=1 << 20)
    assert [(p.index, p.path, p.fmt, p.start, p.end, p.last) for p in parts] == [
        (i, str(f), fmt, 0, f.stat().st_size, True)
        for i, (f, fmt) in enumerate(zip(files, ["txt", "jsonl", "txt"], strict=True))
    ]


def test_plan_parts_text_cuts_tile_the_file_before_a_letter_or_digit(shakespeare_x3: Path) -> None:
    data = shakespeare_x3.read_bytes()
    part_bytes = 100_000
    parts = plan_parts([shakespeare_x3], part_bytes)
    assert len(parts) >= len(data) // part_bytes // 2
    _assert_tiles(parts, len(data))
    for p in parts[1:]:
        assert data[p.start - 1 : p.start] == b"\n"
        assert chr(data[p.start]).isascii() and chr(data[p.start]).isalnum()
    for p in parts[:-1]:
        assert part_bytes <= p.size < part_bytes + 2_000  # the next safe place is never far in real text

    items, stats = _read_parts(parts)
    assert len(items) == len(parts)
    assert [complete for _, complete in items] == [p.last for p in parts]
    assert "".join(text for text, _ in items) == data.decode("utf-8")
    assert stats.documents == 1
    assert stats.bytes == len(data)


def test_plan_parts_jsonl_cuts_at_line_starts(tmp_path: Path) -> None:
    docs = _docs(3000, seed=4)
    path = _write_jsonl(tmp_path / "many.jsonl", [{"text": d} for d in docs])
    data = path.read_bytes()
    parts = plan_parts([path], 10_000)
    assert len(parts) > 10
    _assert_tiles(parts, len(data))
    for p in parts[1:]:
        assert data[p.start - 1 : p.start] == b"\n"
        assert data[p.start : p.start + 1] == b"{"
    items, stats = _read_parts(parts)
    assert items == [(d, True) for d in docs]
    assert stats.documents == len(docs)


def test_plan_parts_separator_cuts_right_after_the_separator(tmp_path: Path) -> None:
    docs = _docs(2000, seed=5)
    path = tmp_path / "stories.txt"
    path.write_text("".join(f"{d}\n{SEP}\n" for d in docs), encoding="utf-8")
    data = path.read_bytes()
    sep = SEP.encode()
    parts = plan_parts([path], 10_000, separator=SEP)
    assert len(parts) > 10
    _assert_tiles(parts, len(data))
    for p in parts[1:]:
        assert data[p.start - len(sep) : p.start] == sep
    items, stats = _read_parts(parts, separator=SEP)
    assert items == [(d, True) for d in docs]
    assert stats.documents == len(docs)
    # The same file without the separator is cut at text-safe places instead, and is one document.
    plain = plan_parts([path], 10_000)
    assert {p.start for p in plain} != {p.start for p in parts}
    items, stats = _read_parts(plain)
    assert stats.documents == 1
    assert "".join(text for text, _ in items) == data.decode("utf-8")


def test_plan_parts_without_any_safe_place_keeps_one_part(tmp_path: Path) -> None:
    path = tmp_path / "one_line.txt"
    path.write_text("word " * 50_000, encoding="utf-8")
    (part,) = plan_parts([path], 1_000)
    assert (part.start, part.end, part.last) == (0, path.stat().st_size, True)


# ------------------------------------------------------------------------------------------------ cuts keep tokens


def _part_texts(path: Path, part_bytes: int) -> list[str]:
    items, _ = _read_parts(plan_parts([path], part_bytes))
    return [text for text, _ in items]


@pytest.mark.parametrize("name", ["cl100k", "gpt2-pattern", "o200k-pattern"])
def test_cuts_do_not_change_tokens(name: str, tokenizers: dict[str, BPETokenizer], shakespeare_file: Path) -> None:
    tok = tokenizers[name]
    whole = tok.encode(SHAKESPEARE)
    for pieces in (_part_texts(shakespeare_file, 100_000), cut_segments(SHAKESPEARE, 100_000)):
        assert len(pieces) >= 8
        assert "".join(pieces) == SHAKESPEARE
        assert [i for piece in pieces for i in tok.encode(piece)] == whole


def test_cuts_do_not_change_tokens_with_the_real_gpt2_vocabulary(fixtures: Path, shakespeare_file: Path) -> None:
    tok = get_tokenizer(fixtures / "tokenizers" / "gpt2")
    whole = tok.encode(SHAKESPEARE)
    for pieces in (_part_texts(shakespeare_file, 100_000), cut_segments(SHAKESPEARE, 100_000)):
        assert [i for piece in pieces for i in tok.encode(piece)] == whole


def test_cut_segments_pieces_rejoin_and_cut_before_a_letter_or_digit() -> None:
    text = SHAKESPEARE[:300_000]
    target = 10_000
    pieces = cut_segments(text, target)
    assert "".join(pieces) == text
    assert len(pieces) >= 15
    for piece in pieces[:-1]:
        assert piece.endswith("\n")
        assert target <= len(piece) < target + 2_000
    for piece in pieces[1:]:
        assert piece[0].isascii() and piece[0].isalnum()
    assert len(pieces[-1]) <= target * 1.5 + 2_000
    short = text[:14_000]
    assert cut_segments(short, target) == [short]  # up to 1.5 targets stays whole
    assert cut_segments("x" * 50_000, target) == ["x" * 50_000]  # nowhere safe to cut


# ------------------------------------------------------------------------------------------------ max_bytes


@pytest.mark.parametrize("fmt", ["jsonl", "separator"])
def test_iter_corpus_max_bytes_reads_about_that_many_bytes(tmp_path: Path, fmt: str) -> None:
    docs = _docs(400, seed=6, words=(40, 60))
    if fmt == "jsonl":
        path = _write_jsonl(tmp_path / "docs.jsonl", [{"text": d} for d in docs])
    else:
        path = tmp_path / "docs.txt"
        path.write_text(SEP.join(docs), encoding="utf-8")
    limit = path.stat().st_size // 4
    got = list(iter_corpus([path], separator=SEP if fmt == "separator" else None, max_bytes=limit))
    assert got == docs[: len(got)]
    longest = max(len(d.encode("utf-8")) for d in docs)
    assert limit - longest <= sum(len(d.encode("utf-8")) for d in got) <= limit + 2 * longest


def test_iter_corpus_max_bytes_on_parquet_stops_near_the_limit(tmp_path: Path) -> None:
    docs = _docs(400, seed=7, words=(40, 60))
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": docs}), path)
    limit = sum(len(d.encode("utf-8")) for d in docs) // 4
    got = list(iter_corpus([path], max_bytes=limit))
    assert got == docs[: len(got)]
    size = sum(len(d.encode("utf-8")) for d in got)
    assert limit <= size <= limit + max(len(d.encode("utf-8")) for d in docs)
