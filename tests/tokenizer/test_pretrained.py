"""Tests for kiln.tokenizer.pretrained and get_tokenizer: OpenAI's vocabularies give tiktoken's ids byte for byte
(checked against a real tiktoken Encoding built from tiktoken_ext's own parameters and local vocabulary files),
GPT-2's encoder.json + vocab.bpe, tiktoken's download cache, and clear errors for missing or bad files. Offline:
the network is never touched (a test that would download fails instead)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

from kiln.tokenizer import ENDOFTEXT, BPETokenizer, ByteTokenizer, get_tokenizer, load_pretrained, train_bpe
from kiln.tokenizer.pretrained import PRETRAINED, VocabularyUnavailable, pretrained_names, read_gpt2_files
from kiln.train.data import bundled_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizers"
CL100K_FILE = FIXTURES / "cl100k_base.tiktoken"
GPT2_DIR = FIXTURES / "gpt2"

SPECIALS_TEXT = (
    f"Document one ends here.{ENDOFTEXT}Document two <|fim_prefix|>def f(x):<|fim_suffix|>\n"
    f"<|fim_middle|>  return x<|endofprompt|>{ENDOFTEXT}{ENDOFTEXT} <|endoftext <|im_start|> |>"
)
UNICODE_TEXT = (
    "naïve café résumé — Grüße aus München! Ça va? «¡Hola, señor!» Ωμέγα Привет, мир 東京は日本の首都です。"
    "北京是中国的首都 서울 नमस्ते مرحبا 😀😀👍🏽👩‍👩‍👧‍👦🇫🇷 ✨\u00a0\u2003\u3000 \u200b zero-width\n"
    "def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text]  # 日本語 comment\r\n\r\n"
    "\tif (x == 1) { y += 0x1F600; }\n\n\n    \n"
    "2026 1234567 12345678901234567890 3.14159 1,000,000 42nd 007 2026-11-23T13:50:00Z +1 (555) 123-4567\n"
    "don't DON'T it's I'll we've they're You'RE CamelCaseWord HTTPServer getHTTPResponse iPhone\n"
    "   trailing spaces   \n\n   "
)


def sample_text() -> str:
    shakespeare = bundled_text()
    return shakespeare[:40_000] + UNICODE_TEXT + shakespeare[500_000:510_000]


def c4_text(shared_data: Path, n: int = 150) -> str:
    lines = (shared_data / "text" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line)["text"] for line in lines[:n]]
    assert len(docs) == n
    return "\n\n".join(docs)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt by tiktoken's loader fails at once (local files still read)."""
    real_read_file = tiktoken.load.read_file

    def read_file(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise RuntimeError(f"test tried to download {blobpath}")
        return real_read_file(blobpath)

    monkeypatch.setattr(tiktoken.load, "read_file", read_file)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


def tiktoken_encoding(name: str, local_file: Path) -> tiktoken.Encoding:
    """The real tiktoken Encoding, from tiktoken_ext.openai_public's own constructor (its pat_str, special
    tokens and explicit_n_vocab), with only the vocabulary download replaced by reading `local_file`, which
    must have the sha256 tiktoken expects."""
    constructor: Callable[[], dict[str, Any]] = openai_public.ENCODING_CONSTRUCTORS[name]
    requested: list[str] = []

    def local_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        requested.append(url)
        assert url.endswith(f"/{name}.tiktoken")
        assert hashlib.sha256(local_file.read_bytes()).hexdigest() == expected_hash
        return tiktoken.load.load_tiktoken_bpe(str(local_file))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(openai_public, "load_tiktoken_bpe", local_load)
        mp.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local file directly, cache nothing
        params = constructor()
    assert len(requested) == 1
    return tiktoken.Encoding(**params)


def assert_same_as_tiktoken(kiln_tok: BPETokenizer, enc: tiktoken.Encoding, text: str) -> None:
    assert kiln_tok.pattern == enc._pat_str
    assert kiln_tok.special_tokens == enc._special_tokens
    assert kiln_tok.vocab_size == enc.n_vocab
    assert kiln_tok.eot_id == enc.eot_token
    ids = kiln_tok.encode(text)
    assert ids == enc.encode_ordinary(text)
    assert ids == enc.encode(text, disallowed_special=())
    assert kiln_tok.decode(ids) == enc.decode(ids) == text
    with_specials = text + SPECIALS_TEXT
    known = {s for s in enc.special_tokens_set if s in with_specials}
    assert known  # the text really contains special-token text
    assert kiln_tok.encode(with_specials) == enc.encode_ordinary(with_specials)
    all_ids = kiln_tok.encode(with_specials, allowed_special="all")
    assert all_ids == enc.encode(with_specials, allowed_special="all")
    assert set(all_ids) & set(enc._special_tokens.values())
    assert kiln_tok.encode(with_specials, allowed_special={ENDOFTEXT}) == enc.encode(
        with_specials, allowed_special={ENDOFTEXT}, disallowed_special=()
    )
    assert kiln_tok.decode(all_ids) == enc.decode(all_ids) == with_specials


@pytest.fixture(scope="module")
def cl100k() -> BPETokenizer:
    return load_pretrained("cl100k_base", CL100K_FILE)


@pytest.fixture(scope="module")
def cl100k_tiktoken() -> tiktoken.Encoding:
    return tiktoken_encoding("cl100k_base", CL100K_FILE)


# ---------------------------------------------------------------------------------------------- tiktoken agreement


def test_cl100k_matches_tiktoken(cl100k: BPETokenizer, cl100k_tiktoken: tiktoken.Encoding) -> None:
    assert cl100k.name == "cl100k_base"
    assert cl100k.ranks == cl100k_tiktoken._mergeable_ranks
    assert_same_as_tiktoken(cl100k, cl100k_tiktoken, sample_text())


@pytest.mark.parametrize(
    "piece",
    ["", " ", "\n", "😀", "2026", "1234567", " 12345", "\r\n", "   \n  x", "don't", "<|endoftext|>", "\u00a0\u00a0a"],
)
def test_cl100k_matches_tiktoken_on_short_pieces(
    cl100k: BPETokenizer, cl100k_tiktoken: tiktoken.Encoding, piece: str
) -> None:
    assert cl100k.encode(piece) == cl100k_tiktoken.encode_ordinary(piece)
    assert cl100k.decode(cl100k.encode(piece)) == piece


@pytest.mark.shared
def test_cl100k_matches_tiktoken_on_c4(
    cl100k: BPETokenizer, cl100k_tiktoken: tiktoken.Encoding, shared_data: Path
) -> None:
    text = c4_text(shared_data)
    assert len(text) > 100_000
    assert_same_as_tiktoken(cl100k, cl100k_tiktoken, text)
    docs = text.split("\n\n")
    assert cl100k.encode_batch(docs, workers=1) == cl100k_tiktoken.encode_ordinary_batch(docs)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["r50k_base", "p50k_base", "o200k_base"])
def test_shared_vocabularies_match_tiktoken(name: str, shared_data: Path) -> None:
    local = shared_data / "tokenizers" / "tiktoken" / f"{name}.tiktoken"
    enc = tiktoken_encoding(name, local)
    tok = load_pretrained(name, local)
    assert tok.name == name
    assert tok.ranks == enc._mergeable_ranks
    assert_same_as_tiktoken(tok, enc, sample_text() + c4_text(shared_data, 60))
    # a directory holding <name>.tiktoken works as well as the file
    assert load_pretrained(name, local.parent).ranks == tok.ranks


# ---------------------------------------------------------------------------------------------- GPT-2 files


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return load_pretrained("gpt2", GPT2_DIR)


def tiktoken_gpt2_ranks(directory: Path) -> dict[bytes, int]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", "")
        return tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(directory / "vocab.bpe"), encoder_json_file=str(directory / "encoder.json")
        )


def test_gpt2_files_give_tiktokens_ranks(gpt2: BPETokenizer) -> None:
    expected = tiktoken_gpt2_ranks(GPT2_DIR)
    assert len(expected) == 50256
    assert gpt2.ranks == expected
    assert gpt2.name == "r50k_base"
    assert gpt2.special_tokens == {ENDOFTEXT: 50256}
    assert gpt2.vocab_size == 50257
    # and it encodes as tiktoken's gpt2 encoding (its constructor's pattern and specials, these ranks)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(openai_public, "data_gym_to_mergeable_bpe_ranks", lambda **kw: expected)
        enc = tiktoken.Encoding(**openai_public.gpt2())
    assert_same_as_tiktoken(gpt2, enc, sample_text())


@pytest.mark.shared
def test_gpt2_files_equal_r50k_base(gpt2: BPETokenizer, shared_data: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", "")
        r50k = tiktoken.load.load_tiktoken_bpe(str(shared_data / "tokenizers" / "tiktoken" / "r50k_base.tiktoken"))
    assert gpt2.ranks == r50k
    assert tiktoken_gpt2_ranks(shared_data / "tokenizers" / "gpt2") == r50k


def copy_gpt2(tmp_path: Path) -> Path:
    target = tmp_path / "gpt2"
    target.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(GPT2_DIR / name, target / name)
    return target


def test_missing_vocab_bpe_is_file_not_found(tmp_path: Path) -> None:
    directory = copy_gpt2(tmp_path)
    (directory / "vocab.bpe").unlink()
    with pytest.raises(FileNotFoundError, match=r"vocab\.bpe"):
        load_pretrained("gpt2", directory)
    with pytest.raises(FileNotFoundError, match=r"vocab\.bpe") as exc:
        read_gpt2_files(directory / "encoder.json", directory / "vocab.bpe")
    assert str(directory / "vocab.bpe") in str(exc.value)
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        read_gpt2_files(directory / "nope.json", GPT2_DIR / "vocab.bpe")


def test_encoder_json_that_disagrees_with_vocab_bpe(tmp_path: Path) -> None:
    directory = copy_gpt2(tmp_path)
    encoder = json.loads((directory / "encoder.json").read_text(encoding="utf-8"))
    dropped = next(k for k, v in encoder.items() if v == 30000)
    del encoder[dropped]
    (directory / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    with pytest.raises(ValueError, match="disagree"):
        load_pretrained("gpt2", directory)


def test_vocab_bpe_with_a_missing_merge_disagrees(tmp_path: Path) -> None:
    directory = copy_gpt2(tmp_path)
    lines = (directory / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    del lines[1000]
    (directory / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="disagree"):
        load_pretrained("gpt2", directory)


def test_vocab_bpe_without_version_header_loads(tmp_path: Path, gpt2: BPETokenizer) -> None:
    directory = copy_gpt2(tmp_path)
    lines = (directory / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#version")
    (directory / "vocab.bpe").write_text("\n".join(lines[1:]) + "\n", encoding="utf-8")
    assert load_pretrained("gpt2", directory).ranks == gpt2.ranks


def test_vocab_bpe_without_header_error_names_the_right_line(tmp_path: Path) -> None:
    directory = copy_gpt2(tmp_path)
    lines = (directory / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]  # drop the header
    lines[4] = "a b c"  # now line 5 of the file
    (directory / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.bpe:5:"):
        load_pretrained("gpt2", directory)


@pytest.mark.parametrize("content", ["{not json", '["a", "b"]', '{"a": "one"}', ""])
def test_malformed_encoder_json(tmp_path: Path, content: str) -> None:
    directory = copy_gpt2(tmp_path)
    (directory / "encoder.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoder\.json"):
        load_pretrained("gpt2", directory)


def test_malformed_vocab_bpe_line(tmp_path: Path) -> None:
    directory = copy_gpt2(tmp_path)
    lines = (directory / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    lines[5] = "Ġt he extra"
    (directory / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.bpe:6"):
        load_pretrained("gpt2", directory)


def test_unknown_pretrained_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown pretrained tokenizer 'gpt5'") as exc:
        load_pretrained("gpt5", CL100K_FILE)
    for name in ("r50k_base", "p50k_base", "cl100k_base", "o200k_base", "gpt2", "gpt4"):
        assert name in str(exc.value)
    assert set(pretrained_names()) >= {"r50k_base", "cl100k_base", "gpt-4o"}


def test_directory_without_the_named_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cl100k_base\.tiktoken"):
        load_pretrained("cl100k_base", tmp_path)
    with pytest.raises(FileNotFoundError, match="vocabulary file not found"):
        load_pretrained("cl100k_base", tmp_path / "cl100k_base.tiktoken")


# ---------------------------------------------------------------------------------------------- by name: cache


@pytest.mark.usefixtures("offline")
def test_load_by_name_through_tiktoken_cache(empty_cache: Path, cl100k: BPETokenizer) -> None:
    url = PRETRAINED["cl100k_base"].url
    shutil.copyfile(CL100K_FILE, empty_cache / hashlib.sha1(url.encode()).hexdigest())
    tok = load_pretrained("cl100k_base")
    assert tok.ranks == cl100k.ranks
    assert tok.special_tokens == cl100k.special_tokens
    text = sample_text()
    assert tok.encode(text) == cl100k.encode(text)
    assert load_pretrained("gpt4").ranks == cl100k.ranks  # the alias resolves to the same cached file


@pytest.mark.usefixtures("offline")
def test_corrupt_cache_file_is_not_trusted(empty_cache: Path) -> None:
    url = PRETRAINED["cl100k_base"].url
    data = bytearray(CL100K_FILE.read_bytes())
    data[100] ^= 1
    (empty_cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(bytes(data))
    with pytest.raises(VocabularyUnavailable, match="KILN_VOCAB_DIR"):
        load_pretrained("cl100k_base")


@pytest.mark.usefixtures("empty_cache")
def test_download_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_url = "http://127.0.0.1:9/cl100k_base.tiktoken"
    monkeypatch.setitem(PRETRAINED, "cl100k_base", dataclasses.replace(PRETRAINED["cl100k_base"], url=bad_url))
    with pytest.raises(VocabularyUnavailable) as exc:
        load_pretrained("cl100k_base")
    assert isinstance(exc.value, FileNotFoundError)
    message = str(exc.value)
    assert "KILN_VOCAB_DIR" in message and bad_url in message and "cl100k_base" in message
    monkeypatch.delenv("KILN_VOCAB_DIR", raising=False)
    with pytest.raises(VocabularyUnavailable, match="KILN_VOCAB_DIR"):
        get_tokenizer("gpt4")


# ---------------------------------------------------------------------------------------------- get_tokenizer


@pytest.fixture
def no_vocab_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KILN_VOCAB_DIR", raising=False)


@pytest.mark.usefixtures("no_vocab_dir")
def test_get_tokenizer_saved_directory(tmp_path: Path) -> None:
    tok = train_bpe([bundled_text()[:50_000]], 300)
    tok.save(tmp_path / "tok")
    loaded = get_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, BPETokenizer)
    assert loaded.ranks == tok.ranks
    assert get_tokenizer(str(tmp_path / "tok")).encode(UNICODE_TEXT) == tok.encode(UNICODE_TEXT)


@pytest.mark.usefixtures("no_vocab_dir")
def test_get_tokenizer_byte() -> None:
    tok = get_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer)
    assert tok.encode("é") == [0xC3, 0xA9]


@pytest.mark.usefixtures("no_vocab_dir", "offline")
def test_get_tokenizer_gpt2_directory(gpt2: BPETokenizer) -> None:
    tok = get_tokenizer(GPT2_DIR)
    assert isinstance(tok, BPETokenizer)
    assert tok.ranks == gpt2.ranks and tok.name == "r50k_base"


@pytest.mark.usefixtures("no_vocab_dir", "offline")
def test_get_tokenizer_tiktoken_file(cl100k: BPETokenizer) -> None:
    tok = get_tokenizer(str(CL100K_FILE))
    assert isinstance(tok, BPETokenizer)
    assert tok.ranks == cl100k.ranks and tok.special_tokens == cl100k.special_tokens


@pytest.mark.usefixtures("no_vocab_dir", "offline")
def test_get_tokenizer_tiktoken_file_with_unknown_stem(tmp_path: Path) -> None:
    path = tmp_path / "mystery.tiktoken"
    shutil.copyfile(CL100K_FILE, path)
    with pytest.raises(ValueError, match="named after its encoding") as exc:
        get_tokenizer(path)
    assert "cl100k_base" in str(exc.value)


@pytest.mark.usefixtures("offline", "empty_cache")
@pytest.mark.parametrize("subdir", ["", "tiktoken"])
def test_get_tokenizer_from_kiln_vocab_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cl100k: BPETokenizer, subdir: str
) -> None:
    vocab_dir = tmp_path / "vocab"
    (vocab_dir / subdir).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CL100K_FILE, vocab_dir / subdir / "cl100k_base.tiktoken")
    monkeypatch.setenv("KILN_VOCAB_DIR", str(vocab_dir))
    for spec in ("cl100k_base", "gpt4", "gpt-4"):
        tok = get_tokenizer(spec)
        assert isinstance(tok, BPETokenizer)
        assert tok.name == "cl100k_base"
        assert tok.ranks == cl100k.ranks
        assert tok.encode(UNICODE_TEXT) == cl100k.encode(UNICODE_TEXT)
    # a name the directory does not hold falls through to tiktoken's download (refused here)
    with pytest.raises(VocabularyUnavailable):
        get_tokenizer("o200k_base")


@pytest.mark.usefixtures("no_vocab_dir")
@pytest.mark.parametrize("spec", ["no-such-tokenizer", "gpt5", "cl100k"])
def test_get_tokenizer_unknown_name(spec: str) -> None:
    with pytest.raises(ValueError, match=f"unknown tokenizer '{spec}'") as exc:
        get_tokenizer(spec)
    assert "byte" in str(exc.value) and "cl100k_base" in str(exc.value)


@pytest.mark.usefixtures("no_vocab_dir")
def test_get_tokenizer_directory_without_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no tokenizer") as exc:
        get_tokenizer(tmp_path)
    assert str(tmp_path) in str(exc.value)
    (tmp_path / "encoder.json").write_text("{}", encoding="utf-8")  # half of GPT-2's pair is not a tokenizer
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        get_tokenizer(tmp_path)
