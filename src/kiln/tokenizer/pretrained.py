"""OpenAI's vocabularies (GPT-2, r50k, p50k, cl100k, o200k) as kiln `BPETokenizer`s, from local files or by name.

Offline first: `load_pretrained("cl100k_base", "path/to/cl100k_base.tiktoken")` or a directory holding
`<name>.tiktoken` (or GPT-2's `encoder.json` + `vocab.bpe`). By name alone it goes through tiktoken's own
loader, which downloads from OpenAI's public blob store once, checks the sha256 and caches the file
(`TIKTOKEN_CACHE_DIR`), so kiln and tiktoken share one cache. The split patterns and special tokens are
tiktoken's, so the ids match OpenAI's byte for byte (tests check it against tiktoken itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kiln.tokenizer.bpe import ENDOFTEXT, BPETokenizer, read_tiktoken_file
from kiln.tokenizer.patterns import GPT2_PATTERN, GPT4_PATTERN, O200K_PATTERN

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"


class VocabularyUnavailable(FileNotFoundError):
    """A named vocabulary is neither local nor downloadable (no network, or a bad download)."""


@dataclass(frozen=True)
class Pretrained:
    url: str
    sha256: str
    pattern: str
    special_tokens: dict[str, int] = field(default_factory=dict)


PRETRAINED: dict[str, Pretrained] = {
    "r50k_base": Pretrained(
        _BLOB + "r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        GPT2_PATTERN,
        {ENDOFTEXT: 50256},
    ),
    "p50k_base": Pretrained(
        _BLOB + "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
        GPT2_PATTERN,
        {ENDOFTEXT: 50256},
    ),
    "cl100k_base": Pretrained(
        _BLOB + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        GPT4_PATTERN,
        {
            ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": Pretrained(
        _BLOB + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        O200K_PATTERN,
        {ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
    ),
}
ALIASES = {"gpt2": "r50k_base", "gpt4": "cl100k_base", "gpt-4": "cl100k_base", "gpt-4o": "o200k_base"}
GPT2_FILES = ("encoder.json", "vocab.bpe")


def pretrained_names() -> list[str]:
    return [*PRETRAINED, *ALIASES]


def load_pretrained(name: str, path: str | Path | None = None) -> BPETokenizer:
    """One of OpenAI's vocabularies by name, from `path` (a .tiktoken file, or a directory with
    `<name>.tiktoken` or GPT-2's encoder.json + vocab.bpe) or, without a path, through tiktoken's cached
    download. "gpt2" from encoder.json/vocab.bpe gives exactly r50k_base."""
    canonical = ALIASES.get(name, name)
    if canonical not in PRETRAINED:
        raise ValueError(f"unknown pretrained tokenizer {name!r}; known: {', '.join(pretrained_names())}")
    spec = PRETRAINED[canonical]
    if path is None:
        from tiktoken.load import load_tiktoken_bpe

        try:
            ranks = load_tiktoken_bpe(spec.url, expected_hash=spec.sha256)
        except Exception as e:  # requests' network errors, a hash mismatch, a full cache disk ...
            raise VocabularyUnavailable(
                f"could not fetch the {canonical} vocabulary from {spec.url} ({type(e).__name__}); offline? "
                f"give a local {canonical}.tiktoken file or directory, or set KILN_VOCAB_DIR"
            ) from e
    else:
        ranks = _ranks_from_path(Path(path), canonical)
    return BPETokenizer(ranks, spec.pattern, spec.special_tokens, name=canonical)


def _ranks_from_path(path: Path, canonical: str) -> dict[bytes, int]:
    if path.is_dir():
        file = path / f"{canonical}.tiktoken"
        if file.is_file():
            return read_tiktoken_file(file)
        if canonical == "r50k_base" and all((path / f).is_file() for f in GPT2_FILES):
            return read_gpt2_files(path / "encoder.json", path / "vocab.bpe")
        also = " (nor encoder.json + vocab.bpe)" if canonical == "r50k_base" else ""
        raise FileNotFoundError(f"{path} has no {canonical}.tiktoken{also}")
    return read_tiktoken_file(path)


def read_gpt2_files(encoder_json: str | Path, vocab_bpe: str | Path) -> dict[bytes, int]:
    """GPT-2's original release: encoder.json (token string -> id, bytes shown through a byte-to-unicode map)
    and vocab.bpe (the merges in order). Returns the same ranks as r50k_base; checks the two files agree."""
    encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}

    def to_bytes(token: str, where: Path) -> bytes:
        try:
            return bytes(byte_of[ch] for ch in token)
        except KeyError as e:
            raise ValueError(f"{where}: token {token!r} has a character outside GPT-2's byte alphabet: {e}") from None

    try:
        encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file not found: {encoder_json}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{encoder_json}: not a GPT-2 encoder.json ({e})") from None
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise ValueError(f"{encoder_json}: expected a JSON object of token -> integer id")
    try:
        lines = vocab_bpe.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file not found: {vocab_bpe}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{vocab_bpe}: not a GPT-2 vocab.bpe (not UTF-8: {e})") from None
    first = 1
    if lines and lines[0].startswith("#version"):
        lines, first = lines[1:], 2
    # Ranks: the 256 bytes in GPT-2's order (printable bytes first), then one token per merge line.
    ranks: dict[bytes, int] = {bytes([b]): i for i, b in enumerate(bytes_to_unicode())}
    for lineno, line in enumerate(lines, first):
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{vocab_bpe}:{lineno}: expected two space-separated tokens, got {line[:60]!r}")
        ranks[to_bytes(parts[0], vocab_bpe) + to_bytes(parts[1], vocab_bpe)] = len(ranks)
    # encoder.json must describe the same vocabulary (plus <|endoftext|>), or the files do not belong together.
    decoded = {to_bytes(k, encoder_json): v for k, v in encoder.items() if k != ENDOFTEXT}
    if decoded != ranks:
        raise ValueError(f"{encoder_json} and {vocab_bpe} disagree: they are not the same GPT-2 vocabulary")
    return ranks


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (so merges could be stored as text): printable
    Latin-1 bytes map to themselves, the other 68 to U+0100 onwards, in byte order. Also HF's ByteLevel map."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping
