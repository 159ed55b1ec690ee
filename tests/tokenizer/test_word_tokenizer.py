"""Tests for kiln.tokenizer.WordTokenizer: frequency-ranked vocabulary, <|unk|>, exact round trips of known text,
special tokens, save/load and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.tokenizer import ENDOFTEXT, Tokenizer, WordTokenizer, load_tokenizer
from kiln.tokenizer.base import META_FILE
from kiln.tokenizer.word import UNK
from kiln.train.data import bundled_text

SHAKESPEARE_HEAD = bundled_text()[:50_000]


@pytest.fixture(scope="module")
def shakespeare_tok() -> WordTokenizer:
    return WordTokenizer.train([SHAKESPEARE_HEAD], 100_000)  # room for every piece of the text


# ---------------------------------------------------------------------------------------------- training


def test_train_keeps_most_frequent_pieces_ties_alphabetical() -> None:
    # pieces: " " x4, "b" x3, "a" x2, then "!" and "c" once each ("!" sorts first)
    corpus = ["b a b c", "a b!"]
    tok = WordTokenizer.train(corpus, 6)
    assert tok.words == [UNK, " ", "b", "a", "!"]
    assert tok.special_tokens == {ENDOFTEXT: 5}
    assert tok.vocab_size == 6
    assert isinstance(tok, Tokenizer)
    smaller = WordTokenizer.train(corpus, 5)
    assert smaller.words == [UNK, " ", "b", "a"]
    bigger = WordTokenizer.train(corpus, 100, special_tokens=())
    assert bigger.words == [UNK, " ", "b", "a", "!", "c"]  # fewer pieces than room: all kept
    assert bigger.special_tokens == {} and bigger.vocab_size == 6


def test_train_counts_across_documents_and_whitespace_runs() -> None:
    tok = WordTokenizer.train(["x  y", "x  z\n\n", "y\n\nx"], 10, special_tokens=())
    # "x" 3, "  " 2, "\n\n" 2, "y" 2, "z" 1: whitespace runs are pieces of their own
    assert tok.words == [UNK, "x", "\n\n", "  ", "y", "z"]


def test_unk_is_id_zero_and_unknown_words_encode_to_it() -> None:
    tok = WordTokenizer.train(["the cat sat on the mat"], 6)
    assert tok.unk_id == 0 and tok.words[0] == UNK
    ids = tok.encode("the dog")
    assert ids == [tok.stoi["the"], tok.stoi[" "], 0]
    assert tok.encode("zebra") == [0]
    assert tok.encode("") == []
    assert tok.decode(tok.encode("the dog")) == f"the {UNK}"


def test_known_text_round_trips_exactly(shakespeare_tok: WordTokenizer) -> None:
    assert 1000 < shakespeare_tok.vocab_size < 100_000  # every piece kept, and no more
    ids = shakespeare_tok.encode(SHAKESPEARE_HEAD)
    assert 0 not in ids
    assert shakespeare_tok.decode(ids) == SHAKESPEARE_HEAD
    assert len(ids) < len(SHAKESPEARE_HEAD) / 2


def test_whitespace_and_punctuation_are_tokens() -> None:
    text = "Hello,  world!\n\n\tYes --   ok?\r\n"
    tok = WordTokenizer.train([text], 100, special_tokens=())
    ids = tok.encode(text)
    assert 0 not in ids
    assert tok.decode(ids) == text
    pieces = [tok.words[i] for i in ids]
    assert pieces == ["Hello", ",", "  ", "world", "!", "\n\n\t", "Yes", " ", "-", "-", "   ", "ok", "?", "\r\n"]


def test_unicode_words() -> None:
    text = "café naïve 東京 😀😀 Grüße"
    tok = WordTokenizer.train([text], 100)
    assert {"café", "naïve", "東京", "😀", "Grüße"} <= set(tok.words)
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_text_of_known_pieces_round_trips(shakespeare_tok: WordTokenizer, data: st.DataObject) -> None:
    words = [w for w in shakespeare_tok.words[1:] if re.fullmatch(r"\w+", w)]
    separators = [w for w in shakespeare_tok.words[1:] if not re.fullmatch(r"\w+", w)]
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(words), st.sampled_from(separators)), max_size=20))
    text = "".join(w + s for w, s in pairs)
    ids = shakespeare_tok.encode(text)
    assert 0 not in ids
    assert len(ids) == 2 * len(pairs)  # separators (punctuation, whitespace runs) never merge with words
    assert shakespeare_tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_decode_encode_never_raises(shakespeare_tok: WordTokenizer, text: str) -> None:
    ids = shakespeare_tok.encode(text)
    assert all(0 <= i < shakespeare_tok.vocab_size for i in ids)
    out = shakespeare_tok.decode(ids)
    if 0 not in ids:
        assert out == text


# ---------------------------------------------------------------------------------------------- special tokens


def test_special_tokens_are_ordinary_text_by_default() -> None:
    text = f"hello{ENDOFTEXT}world"
    tok = WordTokenizer.train([text, "<|im_end|>"], 100, special_tokens=(ENDOFTEXT, "<|im_end|>"))
    eot = tok.special_tokens[ENDOFTEXT]
    assert eot == len(tok.words) and tok.special_tokens["<|im_end|>"] == eot + 1
    ids = tok.encode(text)
    assert eot not in ids
    assert [tok.words[i] for i in ids] == ["hello", "<", "|", "endoftext", "|", ">", "world"]
    assert tok.decode(ids) == text


@pytest.mark.parametrize("allowed", [{ENDOFTEXT}, [ENDOFTEXT], "all"])
def test_allowed_special_token_becomes_its_id(allowed: object) -> None:
    text = f"hello {ENDOFTEXT}world{ENDOFTEXT}"
    tok = WordTokenizer.train([text], 100)
    eot = tok.special_tokens[ENDOFTEXT]
    ids = tok.encode(text, allowed_special=allowed)  # type: ignore[arg-type]
    assert ids == [tok.stoi["hello"], tok.stoi[" "], eot, tok.stoi["world"], eot]
    assert tok.decode(ids) == text
    assert tok.id_to_bytes(eot) == ENDOFTEXT.encode()


def test_only_the_allowed_special_becomes_an_id() -> None:
    text = "a<|x|>b<|y|>c"
    tok = WordTokenizer.train([text], 100, special_tokens=("<|x|>", "<|y|>"))
    ids = tok.encode(text, allowed_special={"<|y|>"})
    assert tok.special_tokens["<|y|>"] in ids and tok.special_tokens["<|x|>"] not in ids
    assert tok.decode(ids) == text


def test_unknown_allowed_special_is_an_error() -> None:
    tok = WordTokenizer.train(["hello world"], 100)
    with pytest.raises(ValueError, match=r"<\|nope\|>"):
        tok.encode("hello", allowed_special={"<|nope|>"})
    no_specials = WordTokenizer.train(["hello world"], 100, special_tokens=())
    with pytest.raises(ValueError, match="unknown special"):
        no_specials.encode("hello", allowed_special={ENDOFTEXT})
    assert no_specials.encode(f"hello{ENDOFTEXT}", allowed_special="all") == no_specials.encode(f"hello{ENDOFTEXT}")


def test_bad_special_names() -> None:
    with pytest.raises(ValueError, match="special token"):
        WordTokenizer(["a", "b"], special_tokens=("a",))  # clashes with a word
    with pytest.raises(ValueError, match="special token"):
        WordTokenizer(["a"], special_tokens=("<|x|>", "<|x|>"))
    with pytest.raises(ValueError, match="special token"):
        WordTokenizer(["a"], special_tokens=("",))
    with pytest.raises(ValueError, match="distinct"):
        WordTokenizer(["a", "a"])


# ---------------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(shakespeare_tok: WordTokenizer, tmp_path: Path) -> None:
    shakespeare_tok.save(tmp_path / "word")
    meta = json.loads((tmp_path / "word" / META_FILE).read_text(encoding="utf-8"))
    assert meta["kind"] == "word"
    loaded = load_tokenizer(tmp_path / "word")
    assert isinstance(loaded, WordTokenizer)
    assert loaded.words == shakespeare_tok.words
    assert loaded.special_tokens == shakespeare_tok.special_tokens
    assert loaded.vocab_size == shakespeare_tok.vocab_size
    text = SHAKESPEARE_HEAD[:5000] + ENDOFTEXT + " zebra 😀"
    assert loaded.encode(text, allowed_special="all") == shakespeare_tok.encode(text, allowed_special="all")
    assert loaded.decode(loaded.encode(SHAKESPEARE_HEAD)) == SHAKESPEARE_HEAD
    assert [p.name for p in (tmp_path / "word").iterdir()] == [META_FILE]


def test_save_load_keeps_awkward_pieces(tmp_path: Path) -> None:
    text = 'a"\\ \n\r\t\x00 \u2028 😀 "quoted"'
    tok = WordTokenizer.train([text], 100, special_tokens=("<|a|>",))
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, WordTokenizer)
    assert loaded.words == tok.words
    assert loaded.decode(loaded.encode(text)) == text


@pytest.mark.parametrize("words", [None, "abc", [1, 2], ["a", "a"]])
def test_load_malformed_word_file(tmp_path: Path, words: object) -> None:
    meta = {"kind": "word"} if words is None else {"kind": "word", "words": words}
    (tmp_path / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError):
        load_tokenizer(tmp_path)


# ---------------------------------------------------------------------------------------------- errors, decode, bytes


def test_vocab_size_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        WordTokenizer.train(["a b c"], 2)  # <|unk|> + <|endoftext|>, no room for a word
    with pytest.raises(ValueError, match="too small"):
        WordTokenizer.train(["a b c"], 1, special_tokens=())
    with pytest.raises(ValueError, match="too small"):
        WordTokenizer.train(["a b c"], 3, special_tokens=("<|a|>", "<|b|>"))
    tok = WordTokenizer.train(["a", "a b"], 2, special_tokens=())  # "a" twice, " " and "b" once
    assert tok.words == [UNK, "a"] and tok.vocab_size == 2


@pytest.mark.parametrize("corpus", [[], [""], ["", ""]])
def test_empty_corpus_is_an_error(corpus: list[str]) -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        WordTokenizer.train(corpus, 10)


def test_decode_out_of_range_is_replacement_char() -> None:
    tok = WordTokenizer.train(["hi there"], 10)
    hi = tok.encode("hi")
    for bad in (tok.vocab_size, tok.vocab_size + 5, -1, 10**12):
        assert tok.decode([*hi, bad, *hi]) == "hi\ufffdhi"
    assert tok.decode([tok.special_tokens[ENDOFTEXT]]) == ENDOFTEXT
    assert tok.decode([]) == ""


def test_id_to_bytes() -> None:
    text = "café au lait, café noir"
    tok = WordTokenizer.train([text], 100)
    assert tok.id_to_bytes(0) == UNK.encode()
    assert tok.id_to_bytes(tok.stoi["café"]) == "café".encode()
    assert tok.id_to_bytes(tok.special_tokens[ENDOFTEXT]) == ENDOFTEXT.encode()
    assert b"".join(tok.id_to_bytes(i) for i in tok.encode(text)) == text.encode()
    for bad in (tok.vocab_size, -1, 10**9):
        with pytest.raises(IndexError, match="outside the vocabulary"):
            tok.id_to_bytes(bad)
