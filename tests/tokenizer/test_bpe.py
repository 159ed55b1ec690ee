"""Tests for kiln's byte-level BPE: training (rustbpe vs the Python reference vs a textbook trainer written here),
encoding/decoding round trips, special tokens, batch encoding, save/load, Hugging Face export and `show`."""

from __future__ import annotations

import concurrent.futures
import random
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
import tiktoken.load
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st

import kiln.tokenizer.bpe as bpe_module
from kiln.tokenizer import ENDOFTEXT, BPETokenizer, load_pretrained, load_tokenizer, train_bpe
from kiln.tokenizer.base import META_FILE
from kiln.tokenizer.bpe import RANKS_FILE
from kiln.tokenizer.bpe_reference import count_chunks, train_merges
from kiln.tokenizer.hf_export import export_hf
from kiln.tokenizer.patterns import PATTERNS, resolve_pattern
from kiln.tokenizer.show import render
from kiln.train.data import bundled_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CL100K_FILE = FIXTURES / "tokenizers" / "cl100k_base.tiktoken"
GPT2_DIR = FIXTURES / "tokenizers" / "gpt2"

SHAKESPEARE = bundled_text()

MULTILINGUAL_DOCS = [
    "Grüße aus München! Ça va? Él dijo: «¡Hola, señor!» Ωμέγα και άλφα. Привет, мир — как дела?\n",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다. नमस्ते दुनिया। مرحبا بالعالم\n",
    "😀😀😀 🎉🎉 👩‍👩‍👧‍👦 family 🇫🇷🇯🇵 flags; ✨ sparkles ✨ and 🙂🙃 faces 😀 again 😀😀\n",
    "    indented    code\n\tif (x == 1) {\n\t\treturn y;   // trailing   \n\t}\r\n\r\n\r\n   \n\n\n",
    "numbers 2026 1234567 3.14159 0x1F600 1,000,000 and 42nd 007 2026-11-23T13:50:00Z\n",
    "aaaaaaaaaa abababababab aaaaa bbbbb abab ab ba aab abb   \u00a0\u2003\u3000 wide spaces\n",
    "don't DON'T it's I'll we've they're CamelCaseWord HTTPServer getHTTPResponse\n",
]
MULTILINGUAL_TEXT = "".join(MULTILINGUAL_DOCS)

EXTRA_TEXT = (
    " 2026 1234567 12345678901234567890 3.14 naïve café résumé — Grüße 東京 北京 😀👍🏽 "
    "CamelCaseWords don't DON'T I'M\r\n\r\n   \t\t  \n\n\ndef f(x):\n    return x ** 2  # comment\n"
    "<|endoftext|>Next document <|endoftext|> trailing spaces   "
)


def hf_sample() -> str:
    return SHAKESPEARE[:6000] + SHAKESPEARE[600_000:606_000] + EXTRA_TEXT


@pytest.fixture(scope="module")
def trained() -> BPETokenizer:
    return train_bpe([SHAKESPEARE], 600)


@pytest.fixture(scope="module")
def cl100k() -> BPETokenizer:
    return load_pretrained("cl100k_base", CL100K_FILE)


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return load_pretrained("gpt2", GPT2_DIR)


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", "o200k"])
def test_reference_trainer_equals_rustbpe_on_shakespeare(pattern: str) -> None:
    fast = train_bpe([SHAKESPEARE], 700, pattern=pattern, trainer="rustbpe")
    ref = train_bpe([SHAKESPEARE], 700, pattern=pattern, trainer="reference")
    assert len(fast.ranks) == 699  # 256 bytes + 443 merges, then <|endoftext|>
    assert ref.ranks == fast.ranks
    assert ref.special_tokens == fast.special_tokens == {ENDOFTEXT: 699}
    assert ref.vocab_size == fast.vocab_size == 700
    assert ref.pattern == fast.pattern == PATTERNS[pattern]
    sample = SHAKESPEARE[:3000]
    assert ref.encode(sample) == fast.encode(sample)
    assert len(fast.encode(sample)) < len(sample.encode("utf-8")) / 2  # the merges actually compress


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", "o200k"])
def test_reference_trainer_equals_rustbpe_on_multilingual_documents(pattern: str) -> None:
    # Small and varied: many ties between pair counts, so the tie rule is exercised; several documents, so
    # merges must not cross document boundaries.
    docs = MULTILINGUAL_DOCS * 3 + [d.upper() for d in MULTILINGUAL_DOCS]
    fast = train_bpe(docs, 520, pattern=pattern, trainer="rustbpe")
    ref = train_bpe(docs, 520, pattern=pattern, trainer="reference")
    assert len(fast.ranks) > 400
    assert ref.ranks == fast.ranks
    assert ref.vocab_size == fast.vocab_size
    assert ref.decode(ref.encode(MULTILINGUAL_TEXT)) == MULTILINGUAL_TEXT


def test_reference_trainer_equals_rustbpe_with_custom_pattern() -> None:
    regex = r"\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+"
    fast = train_bpe([MULTILINGUAL_TEXT, SHAKESPEARE[:20000]], 400, pattern=regex, special_tokens=())
    ref = train_bpe(
        [MULTILINGUAL_TEXT, SHAKESPEARE[:20000]], 400, pattern=regex, special_tokens=(), trainer="reference"
    )
    assert ref.ranks == fast.ranks
    assert fast.pattern == regex
    assert fast.special_tokens == {}
    assert fast.vocab_size == 400


def _naive_merge(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out: list[int] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _naive_train(chunk_counts: dict[str, int], num_merges: int) -> list[tuple[int, int]]:
    """The textbook loop: recount every pair from scratch each step, most frequent wins, ties to the smallest."""
    words = [(list(chunk.encode("utf-8")), count) for chunk, count in chunk_counts.items()]
    merges: list[tuple[int, int]] = []
    for step in range(num_merges):
        counts: Counter[tuple[int, int]] = Counter()
        for word, count in words:
            for pair in pairwise(word):
                counts[pair] += count
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        words = [(_naive_merge(word, best, 256 + step), count) for word, count in words]
    return merges


NAIVE_TEXT = (
    "aaaaa aaaa aaa aa a abababab ababab abab ab aabbaabb bbbbbbb " * 4
    + "the theme then thee there these the thé thé 東京東京 😀😀😀 ... !!!!! ??? \n\n\n   \t\t "
    + SHAKESPEARE[:3000]
)


def test_incremental_reference_equals_textbook_trainer_on_text() -> None:
    counts = count_chunks([NAIVE_TEXT], PATTERNS["gpt4"])
    expected = _naive_train(dict(counts), 250)
    assert len(expected) == 250
    assert train_merges(dict(counts), 250) == expected


def test_incremental_reference_equals_textbook_trainer_on_overlapping_runs() -> None:
    counts = {"aaaaa": 3, "abababab": 2, "aaaa": 1, "bab": 5, "aaaaaaa": 2, "ba": 1}
    expected = _naive_train(counts, 100)  # runs until no pair is left
    assert len(expected) < 100
    assert train_merges(counts, 100) == expected
    assert train_merges(counts, 3) == expected[:3]


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.text(alphabet="ab c\u00e9", min_size=1, max_size=12), st.integers(1, 6), max_size=8),
    st.integers(0, 40),
)
def test_incremental_reference_equals_textbook_trainer_property(counts: dict[str, int], num_merges: int) -> None:
    assert train_merges(counts, num_merges) == _naive_train(counts, num_merges)


# ---------------------------------------------------------------------------------------------- round trips

_PIECES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(
        ["😀", "👩‍👩‍👧‍👦", "🇫🇷", "\r\n", "\n\n\n", "   ", "\t \t", ENDOFTEXT, "<|", "|>", " 2026", "'s", "é"]
    ),
    st.text(alphabet=" \t\r\n\u00a0\u3000", min_size=1, max_size=8),
)
ANY_TEXT = st.lists(_PIECES, max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT)
def test_trained_round_trip_any_text(trained: BPETokenizer, text: str) -> None:
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert trained.eot_id not in ids  # special-token text is ordinary text by default
    assert all(0 <= i < trained.vocab_size for i in ids)


@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT)
def test_cl100k_round_trip_any_text(cl100k: BPETokenizer, text: str) -> None:
    ids = cl100k.encode(text)
    assert cl100k.decode(ids) == text
    assert not set(ids) & set(cl100k.special_tokens.values())
    assert cl100k.decode(cl100k.encode(text, allowed_special="all")) == text


# ---------------------------------------------------------------------------------------------- decode edge cases


@pytest.mark.parametrize("which", ["trained", "cl100k"])
def test_decode_of_split_utf8_character_is_replacement_char(which: str, request: pytest.FixtureRequest) -> None:
    tok: BPETokenizer = request.getfixturevalue(which)
    ids = tok.encode("😀")
    assert len(ids) >= 2  # neither vocabulary has the emoji as one token
    assert tok.decode(ids) == "😀"
    cut = tok.decode(ids[:-1])
    assert "\ufffd" in cut and "😀" not in cut
    assert cut == b"".join(tok.id_to_bytes(i) for i in ids[:-1]).decode("utf-8", "replace")
    assert tok.decode(ids[1:]).startswith("\ufffd")
    assert "😀" not in "".join(tok.decode([i]) for i in ids)  # one token at a time never completes it
    assert tok.decode_bytes(ids) == "😀".encode()
    assert tok.decode(tok.encode("a") + ids[:-1] + tok.encode("b")) == "a" + cut + "b"


@pytest.mark.parametrize("which", ["trained", "cl100k"])
def test_decode_of_unknown_ids_is_replacement_char(which: str, request: pytest.FixtureRequest) -> None:
    tok: BPETokenizer = request.getfixturevalue(which)
    h, i = tok.encode("h"), tok.encode("i")
    for bad in (tok.vocab_size, tok.vocab_size + 7, -1, 10**12, 2**64):
        assert tok.decode([*h, bad, *i]) == "h\ufffdi"
        assert tok.decode([bad]) == "\ufffd"
        with pytest.raises(IndexError, match="outside the vocabulary"):
            tok.id_to_bytes(bad)
    assert tok.id_to_bytes(tok.vocab_size - 1) != b""  # the last id is a real (special) token


def test_cl100k_unused_ids_decode_to_replacement_char(cl100k: BPETokenizer) -> None:
    # cl100k leaves 100261..100275 unused between its special tokens
    used = set(cl100k.ranks.values()) | set(cl100k.special_tokens.values())
    unused = [i for i in range(cl100k.vocab_size) if i not in used]
    assert unused
    for i in unused:
        assert cl100k.id_to_bytes(i) == b""
        assert cl100k.decode([i]) == "\ufffd"


def test_id_to_bytes_covers_bytes_merges_and_specials(trained: BPETokenizer) -> None:
    for token, rank in list(trained.ranks.items())[::37]:
        assert trained.id_to_bytes(rank) == token
    assert trained.id_to_bytes(trained.eot_id) == ENDOFTEXT.encode()
    assert b"".join(b for _, b in trained.tokens("To be, or not")) == b"To be, or not"


# ---------------------------------------------------------------------------------------------- special tokens


def test_special_token_text_is_ordinary_by_default(trained: BPETokenizer) -> None:
    text = f"First document.{ENDOFTEXT}Second one."
    ids = trained.encode(text)
    assert trained.eot_id not in ids
    assert trained.decode(ids) == text
    assert b"".join(trained.id_to_bytes(i) for i in ids) == text.encode()
    allowed_ids = trained.encode(text, allowed_special="all")
    assert len(ids) > len(allowed_ids)  # the marker's characters take several ordinary tokens


@pytest.mark.parametrize("allowed", [{ENDOFTEXT}, "all", [ENDOFTEXT]])
def test_allowed_special_token_becomes_its_id(trained: BPETokenizer, allowed: object) -> None:
    text = f"First document.{ENDOFTEXT}Second one."
    ids = trained.encode(text, allowed_special=allowed)  # type: ignore[arg-type]
    eot = trained.eot_id
    assert eot is not None and ids.count(eot) == 1
    assert ids == [*trained.encode("First document."), eot, *trained.encode("Second one.")]
    assert trained.decode(ids) == text


def test_unknown_allowed_special_is_an_error_naming_it(trained: BPETokenizer) -> None:
    with pytest.raises(ValueError, match=r"<\|nope\|>"):
        trained.encode("hi", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match=r"<\|nope\|>"):
        trained.encode("hi", allowed_special={ENDOFTEXT, "<|nope|>"})
    with pytest.raises(ValueError, match=r"<\|nope\|>"):
        trained.encode_batch(["hi"], allowed_special={"<|nope|>"})


def test_with_special_tokens_adds_ids_after_existing(trained: BPETokenizer) -> None:
    before = trained.vocab_size
    tok = trained.with_special_tokens(["<|im_start|>", ENDOFTEXT, "<|im_end|>"])
    assert tok.special_tokens == {ENDOFTEXT: trained.eot_id, "<|im_start|>": before, "<|im_end|>": before + 1}
    assert tok.vocab_size == before + 2
    assert trained.vocab_size == before and "<|im_start|>" not in trained.special_tokens  # original unchanged
    assert tok.ranks == trained.ranks
    text = "<|im_start|>user hi<|im_end|>"
    ids = tok.encode(text, allowed_special="all")
    assert ids[0] == before and ids[-1] == before + 1
    assert tok.decode(ids) == text
    assert tok.id_to_bytes(before + 1) == b"<|im_end|>"
    assert tok.encode(text) == trained.encode(text)  # not allowed: ordinary text, same as before
    with pytest.raises(ValueError, match="non-empty"):
        trained.with_special_tokens([""])


# ---------------------------------------------------------------------------------------------- batch encoding


def _documents() -> list[str]:
    rng = random.Random(0)
    paragraphs = SHAKESPEARE.split("\n\n")
    docs: list[str] = []
    k = 0
    while len(docs) < 296:
        n = rng.randint(1, 4)
        docs.append("\n\n".join(paragraphs[k : k + n]))
        k += n
    docs[10:10] = ["", f"a{ENDOFTEXT}b", MULTILINGUAL_TEXT]
    docs.append("")
    return docs


@pytest.mark.parametrize("allowed", [(), "all"])
def test_encode_batch_equals_one_by_one_on_multiple_processes(
    trained: BPETokenizer, allowed: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _documents()
    assert len(docs) == 300 and sum(len(d) for d in docs) > 1 << 16  # big enough for the multiprocess path
    pools: list[int] = []

    class RecordingPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            pools.append(1)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bpe_module, "ProcessPoolExecutor", RecordingPool)
    batch = trained.encode_batch(docs, workers=2, allowed_special=allowed)  # type: ignore[arg-type]
    assert pools == [1]
    assert batch == [trained.encode(d, allowed_special=allowed) for d in docs]  # type: ignore[arg-type]
    assert (trained.eot_id in batch[11]) == (allowed == "all")
    assert batch[10] == [] and batch[-1] == []


def test_encode_batch_small_input_stays_in_process(cl100k: BPETokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a small batch should not start processes")

    monkeypatch.setattr(bpe_module, "ProcessPoolExecutor", no_pool)
    docs = ["hello world", "", MULTILINGUAL_TEXT, f"x{ENDOFTEXT}y"]
    assert cl100k.encode_batch(docs, workers=2) == [cl100k.encode(d) for d in docs]
    assert cl100k.encode_batch(docs, workers=2, allowed_special="all") == [
        cl100k.encode(d, allowed_special="all") for d in docs
    ]
    assert cl100k.encode_batch([]) == []


# ---------------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(trained: BPETokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = trained.with_special_tokens(["<|im_start|>"])
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == sorted([META_FILE, RANKS_FILE])
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, BPETokenizer)
    assert loaded.ranks == tok.ranks
    assert loaded.pattern == tok.pattern
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.vocab_size == tok.vocab_size
    sample = hf_sample()
    assert loaded.encode(sample) == tok.encode(sample)
    assert loaded.encode(sample, allowed_special="all") == tok.encode(sample, allowed_special="all")
    # tiktoken itself reads the saved ranks file (caching disabled: it is a local file)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert tiktoken.load.load_tiktoken_bpe(str(tmp_path / "tok" / RANKS_FILE)) == tok.ranks


def test_saved_cl100k_ranks_file_is_the_original(cl100k: BPETokenizer, tmp_path: Path) -> None:
    cl100k.save(tmp_path)
    assert (tmp_path / RANKS_FILE).read_bytes() == CL100K_FILE.read_bytes()
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, BPETokenizer)
    assert loaded.special_tokens == cl100k.special_tokens
    assert loaded.encode(EXTRA_TEXT, allowed_special="all") == cl100k.encode(EXTRA_TEXT, allowed_special="all")


@pytest.mark.parametrize(
    "bad_line",
    [b"!!!not-base64!!! 300", b"QUJD", b"QUJD notanumber", b"QUJD 1 2", b"QUJ 300"],
    ids=["bad-base64", "missing-rank", "bad-rank", "extra-field", "bad-padding"],
)
def test_malformed_ranks_file_names_path_and_line(trained: BPETokenizer, tmp_path: Path, bad_line: bytes) -> None:
    trained.save(tmp_path)
    ranks_path = tmp_path / RANKS_FILE
    lines = ranks_path.read_bytes().splitlines()
    lines[41] = bad_line
    ranks_path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError) as exc:
        load_tokenizer(tmp_path)
    assert f"{ranks_path}:42" in str(exc.value)


def test_ranks_file_with_duplicate_rank_is_a_clear_error(trained: BPETokenizer, tmp_path: Path) -> None:
    trained.save(tmp_path)
    ranks_path = tmp_path / RANKS_FILE
    lines = ranks_path.read_bytes().splitlines()
    assert lines[299].split()[1] == b"299" and lines[300].split()[1] == b"300"
    lines[300] = lines[300].split()[0] + b" 299"  # two different tokens claim rank 299
    ranks_path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        load_tokenizer(tmp_path)
    except ValueError as e:
        assert str(ranks_path) in str(e)
    except BaseException as e:  # tiktoken's Rust panic is not an Exception
        pytest.fail(f"{type(e).__name__} instead of a ValueError naming the file: {str(e)[:80]!r}")
    else:
        pytest.fail("a vocabulary with a duplicate rank loaded without complaint")


def test_missing_ranks_file_is_file_not_found(trained: BPETokenizer, tmp_path: Path) -> None:
    trained.save(tmp_path)
    (tmp_path / RANKS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=RANKS_FILE):
        load_tokenizer(tmp_path)


# ---------------------------------------------------------------------------------------------- training errors


def test_vocab_size_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        train_bpe([SHAKESPEARE[:1000]], 257)  # 256 bytes + <|endoftext|>, no room for a merge
    with pytest.raises(ValueError, match="too small"):
        train_bpe([SHAKESPEARE[:1000]], 259, special_tokens=("<|a|>", "<|b|>", "<|c|>"))
    with pytest.raises(ValueError, match="too small"):
        train_bpe([SHAKESPEARE[:1000]], 256, special_tokens=())
    tok = train_bpe([SHAKESPEARE[:1000]], 258)  # exactly one merge fits
    assert tok.vocab_size == 258 and len(tok.ranks) == 257


@pytest.mark.parametrize("trainer", ["rustbpe", "reference"])
@pytest.mark.parametrize("corpus", [[], [""], ["", ""]])
def test_empty_corpus_is_an_error(trainer: str, corpus: list[str]) -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        train_bpe(corpus, 300, trainer=trainer)  # type: ignore[arg-type]


def test_duplicate_or_empty_special_names_are_errors() -> None:
    with pytest.raises(ValueError, match="distinct"):
        train_bpe(["hello world"], 300, special_tokens=("<|a|>", "<|a|>"))
    with pytest.raises(ValueError, match="non-empty"):
        train_bpe(["hello world"], 300, special_tokens=("",))


def test_unknown_trainer_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown trainer 'sentencepiece'"):
        train_bpe(["hello world"], 300, trainer="sentencepiece")  # type: ignore[arg-type]


@pytest.mark.parametrize("trainer", ["rustbpe", "reference"])
@pytest.mark.parametrize("pattern", ["(unclosed", "[a-", "gpt5("])
def test_invalid_pattern_is_an_error(trainer: str, pattern: str) -> None:
    with pytest.raises(ValueError, match="split pattern"):
        train_bpe(["hello world"], 300, pattern=pattern, trainer=trainer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neither a known name"):
        resolve_pattern(pattern)


def test_training_texts_must_be_strings() -> None:
    with pytest.raises(TypeError, match="bytes"):
        train_bpe([b"hello world"], 300, trainer="reference")  # type: ignore[list-item]


def test_bpe_tokenizer_rejects_incomplete_or_clashing_vocabularies() -> None:
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="256 single bytes"):
        BPETokenizer({k: v for k, v in ranks.items() if k != b"A"})
    with pytest.raises(ValueError, match="collide"):
        BPETokenizer(ranks, special_tokens={ENDOFTEXT: 65})
    tok = BPETokenizer(ranks, special_tokens={ENDOFTEXT: 256})
    assert tok.encode("héllo") == list("héllo".encode())


# ---------------------------------------------------------------------------------------------- HF export


@pytest.mark.parametrize("which", ["trained", "gpt2", "cl100k"])
def test_hf_export_gives_identical_ids_and_text(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    tok: BPETokenizer = request.getfixturevalue(which)
    path = export_hf(tok, tmp_path)
    assert path == tmp_path / "tokenizer.json"
    hf = tokenizers.Tokenizer.from_file(str(path))
    text = hf_sample()
    ids = tok.encode(text, allowed_special="all")
    assert tok.eot_id in ids
    assert hf.encode(text, add_special_tokens=False).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == tok.decode(ids) == text
    assert hf.token_to_id(ENDOFTEXT) == tok.eot_id
    for piece in ["2026 1234567", " 12345678901234567890", "😀👍🏽", "don't DON'T", "\r\n\r\n   \n"]:
        assert hf.encode(piece, add_special_tokens=False).ids == tok.encode(piece), piece


@pytest.mark.parametrize("pattern", ["gpt2", "o200k"])
def test_hf_export_of_tokenizers_trained_with_other_patterns(pattern: str, tmp_path: Path) -> None:
    tok = train_bpe([SHAKESPEARE[:200_000], MULTILINGUAL_TEXT], 500, pattern=pattern)
    hf = tokenizers.Tokenizer.from_file(str(export_hf(tok, tmp_path / "tok.json")))
    text = hf_sample() + MULTILINGUAL_TEXT
    ids = tok.encode(text, allowed_special="all")
    assert hf.encode(text, add_special_tokens=False).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == text


# ---------------------------------------------------------------------------------------------- show


def test_render_lists_ids_and_count(trained: BPETokenizer) -> None:
    text = "To be, or not to be: that is the question. 2026"
    ids = trained.encode(text)
    out = render(trained, text, colour=False)
    lines = out.split("\n")
    assert lines[1].split() == [str(i) for i in ids]
    assert lines[2].startswith(f"{len(ids)} tokens, {len(text)} characters, {len(text.encode())} bytes")
    # uncoloured: every token is one bracketed piece, spaces shown as '·'
    assert lines[0].count("[") == lines[0].count("]") == len(ids)
    assert lines[0].startswith("[") and lines[0].endswith("]")
    assert lines[0].replace("[", "").replace("]", "").replace("·", " ") == text


def test_render_colour_and_multiline_and_split_characters(trained: BPETokenizer) -> None:
    text = "hi 😀\nthere\tyou"
    ids = trained.encode(text)
    coloured = render(trained, text)
    assert coloured.count("\x1b[0m") == len(ids)
    assert "[" not in coloured.replace("\x1b[", "")
    assert f"{len(ids)} tokens" in coloured
    plain = render(trained, text, colour=False, ids=False)
    assert "↵\n" in plain and "→" in plain
    assert plain.count("[\ufffd]") == 4  # Shakespeare has no emoji: its 4 bytes are 4 tokens, each shown as U+FFFD
    assert " ".join(map(str, ids)) not in plain
    assert plain.endswith(
        f"{len(ids)} tokens, {len(text)} characters, {len(text.encode())} bytes"
        f" ({len(text.encode()) / len(ids):.2f} bytes/token)"
    )


def test_render_of_empty_text(cl100k: BPETokenizer) -> None:
    out = render(cl100k, "", colour=False)
    assert "0 tokens, 0 characters, 0 bytes" in out
