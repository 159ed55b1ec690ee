"""Tests for kiln.tokenizer: the char and byte tokenizers, and loading a saved tokenizer directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.tokenizer import ByteTokenizer, CharTokenizer, Tokenizer, load_tokenizer
from kiln.tokenizer.base import META_FILE

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler — café, naïve, 東京 😀\n"


# ---------------------------------------------------------------------------------------------- CharTokenizer


def test_char_train_vocab_is_sorted_distinct_characters() -> None:
    tok = CharTokenizer.train(TEXT)
    assert tok.chars == sorted(set(TEXT))
    assert tok.vocab_size == len(set(TEXT))
    assert tok.special_tokens == {}
    assert isinstance(tok, Tokenizer)
    # ids are positions in the sorted vocabulary
    assert tok.encode(tok.chars[0] + tok.chars[-1]) == [0, tok.vocab_size - 1]


def test_char_round_trip() -> None:
    tok = CharTokenizer.train(TEXT)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)  # one token per character, including multi-byte ones
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT
    assert tok.encode("") == []
    assert tok.decode([]) == ""


def test_char_id_to_bytes_is_utf8_of_the_character() -> None:
    tok = CharTokenizer.train(TEXT)
    assert b"".join(tok.id_to_bytes(i) for i in tok.encode(TEXT)) == TEXT.encode("utf-8")


def test_char_unknown_character_names_it() -> None:
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match="'z'") as exc:
        tok.encode("abz")
    assert "vocabulary" in str(exc.value)


@pytest.mark.parametrize("bad_id", [3, 99, -1])
def test_char_decode_out_of_range_is_replacement_char(bad_id: int) -> None:
    tok = CharTokenizer.train("abc")
    assert tok.decode([0, bad_id, 2]) == "a\ufffdc"


def test_char_empty_text_and_bad_vocabularies_are_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.train("")
    with pytest.raises(ValueError, match="at least one"):
        CharTokenizer([])
    with pytest.raises(ValueError, match="one character"):
        CharTokenizer(["ab", "c"])


def test_char_save_and_load(tmp_path: Path) -> None:
    tok = CharTokenizer.train(TEXT)
    tok.save(tmp_path / "tok")
    assert (tmp_path / "tok" / META_FILE).is_file()
    meta = json.loads((tmp_path / "tok" / META_FILE).read_text(encoding="utf-8"))
    assert meta["kind"] == "char"
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, CharTokenizer)
    assert loaded.chars == tok.chars
    assert loaded.encode(TEXT) == tok.encode(TEXT)
    assert loaded.decode(tok.encode(TEXT)) == TEXT
    assert [p.name for p in (tmp_path / "tok").iterdir()] == [META_FILE]  # no temp files left behind


def test_char_save_load_keeps_awkward_characters(tmp_path: Path) -> None:
    text = 'a"\\\n\r\t\x00\u2028😀'
    tok = CharTokenizer.train(text)
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.chars == tok.chars
    assert loaded.decode(loaded.encode(text)) == text


# ---------------------------------------------------------------------------------------------- ByteTokenizer


def test_byte_basics(tmp_path: Path) -> None:
    tok = ByteTokenizer()
    assert tok.vocab_size == 256
    assert tok.special_tokens == {}
    assert isinstance(tok, Tokenizer)
    assert tok.encode("é") == [0xC3, 0xA9]
    assert tok.id_to_bytes(0xC3) == b"\xc3"
    tok.save(tmp_path)
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_round_trip_any_unicode(text: str) -> None:
    # Lone surrogates cannot be encoded as UTF-8 at all; everything else must round-trip exactly.
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            ByteTokenizer().encode(text)
        return
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(encoded)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text


def test_byte_split_utf8_becomes_replacement_char() -> None:
    tok = ByteTokenizer()
    ids = tok.encode("é😀")  # 2 + 4 bytes
    assert tok.decode(ids[:1]) == "\ufffd"
    assert tok.decode(ids[1:2]) == "\ufffd"
    assert tok.decode(ids[:3]) == "é\ufffd"
    assert tok.decode(ids[2:]) == "😀"
    # streaming one token at a time never yields the character, only replacement chars
    assert "😀" not in "".join(tok.decode([i]) for i in ids[2:])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**40), max_value=2**40)))
def test_byte_decode_never_raises(ids: list[int]) -> None:
    out = ByteTokenizer().decode(ids)
    assert isinstance(out, str)
    valid = bytes(i for i in ids if 0 <= i < 256)
    if len(valid) == len(ids):
        assert out == valid.decode("utf-8", "replace")
    else:
        assert "\ufffd" in out


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_byte_decode_of_arbitrary_bytes_matches_python(data: bytes) -> None:
    assert ByteTokenizer().decode(list(data)) == data.decode("utf-8", "replace")


def test_byte_out_of_range_id_is_replacement_char() -> None:
    assert ByteTokenizer().decode([104, 256, 105, -1]) == "h\ufffdi\ufffd"


# ---------------------------------------------------------------------------------------------- load_tokenizer


def test_load_tokenizer_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=META_FILE) as exc:
        load_tokenizer(missing)
    assert str(missing) in str(exc.value)


def test_load_tokenizer_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage"])
def test_load_tokenizer_malformed_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / META_FILE).write_bytes(content)
    with pytest.raises(ValueError, match="not a valid tokenizer file") as exc:
        load_tokenizer(tmp_path)
    assert META_FILE in str(exc.value)


@pytest.mark.parametrize("meta", [{"kind": "sentencepiece"}, {}, ["char"], "char", None])
def test_load_tokenizer_unknown_kind(tmp_path: Path, meta: object) -> None:
    (tmp_path / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown tokenizer kind") as exc:
        load_tokenizer(tmp_path)
    assert "char" in str(exc.value) and "byte" in str(exc.value)  # lists the known kinds


@pytest.mark.parametrize("chars", [None, "", 5, ["a", "b"]])
def test_load_char_tokenizer_without_chars(tmp_path: Path, chars: object) -> None:
    meta = {"kind": "char"} if chars is None else {"kind": "char", "chars": chars}
    (tmp_path / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="non-empty 'chars'"):
        load_tokenizer(tmp_path)
