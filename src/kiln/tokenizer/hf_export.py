"""Export a kiln BPE vocabulary as a Hugging Face `tokenizer.json` (loadable by `tokenizers` and transformers).

HF's BPE model wants a vocabulary of strings and an ordered merge list, while kiln (like tiktoken) keeps only
ranks. The merge that made a token is recovered by running BPE on the token's own bytes with only the
lower-ranked tokens allowed: it stops at exactly two parts, which are the pair (this is how transformers
converts tiktoken files too). Bytes are shown through GPT-2's byte-to-unicode map, which is what HF's
ByteLevel pre-tokenizer and decoder expect. `ignore_merges` makes a chunk that is itself a token encode as
that token, as tiktoken does, so ids agree (tests check them on real text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kiln.tokenizer.bpe import BPETokenizer
from kiln.tokenizer.pretrained import bytes_to_unicode
from kiln.utils.io import atomic_write_text


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge pair of every multi-byte token, in rank order (tokens no merge can build are skipped)."""
    merges: list[tuple[bytes, bytes]] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = _bpe(ranks, token, max_rank=rank)
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges


def _bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def onig_pattern(pattern: str) -> str:
    """The split pattern in Oniguruma's dialect (HF's regex engine). One difference matters for OpenAI's
    patterns: `x{1,3}+` is possessive in fancy-regex but means "(x{1,3}) one or more times" in Oniguruma, which
    would let "2026" be one chunk. Possessive and greedy agree where nothing after the repeat can backtrack into
    it, as in cl100k's `\\p{N}{1,3}+|`, so the `+` is dropped."""
    return re.sub(r"(\{\d+(?:,\d*)?\})\+", r"\1", pattern)


def to_hf_json(tok: BPETokenizer) -> dict[str, Any]:
    """The tokenizer.json document for `tok`."""
    show = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(show[x] for x in b)

    vocab = {text(token): rank for token, rank in tok.ranks.items()}
    # Specials go in the model's vocabulary too: HF renumbers an added token that the vocabulary lacks.
    vocab.update(tok.special_tokens)
    merges = [[text(a), text(b)] for a, b in recover_merges(tok.ranks)]
    model = bpe_model(vocab, merges, ignore_merges=True)
    split = {"type": "Split", "pattern": {"Regex": onig_pattern(tok.pattern)}, "behavior": "Isolated", "invert": False}
    return hf_document(
        model, {"type": "Sequence", "pretokenizers": [split, BYTE_LEVEL]}, BYTE_LEVEL, tok.special_tokens
    )


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def added_tokens(specials: dict[str, int]) -> list[dict[str, Any]]:
    """tokenizer.json's `added_tokens`: each special token matched whole and never normalised."""
    return [
        {
            "id": i,
            "content": name,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for name, i in sorted(specials.items(), key=lambda kv: kv[1])
    ]


def hf_document(model: dict[str, Any], pre_tokenizer: Any, decoder: Any, specials: dict[str, int]) -> dict[str, Any]:
    """A whole tokenizer.json around a model, pre-tokenizer and decoder."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(specials),
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": decoder,
        "model": model,
    }


def export_hf(tok: BPETokenizer, path: str | Path) -> Path:
    """Write `tok` as a tokenizer.json at `path` (a file, or a directory to put tokenizer.json in)."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / "tokenizer.json"
    atomic_write_text(path, json.dumps(to_hf_json(tok), ensure_ascii=False))
    return path


def bpe_model(vocab: dict[str, int], merges: list[list[str]], *, ignore_merges: bool) -> dict[str, Any]:
    """tokenizer.json's BPE model: `ignore_merges` lets a piece that is already a vocabulary entry skip merging
    (tiktoken's rule, right for byte-level BPE; the char and word kinds merge as listed)."""
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": ignore_merges,
        "vocab": vocab,
        "merges": merges,
    }
