"""Every kiln tokenizer as a Hugging Face `tokenizer.json` + `tokenizer_config.json` (AutoTokenizer loads it).

- byte-level BPE: the merges recovered from the ranks (`kiln.tokenizer.hf_export`);
- byte: the same BPE model with no merges (256 byte tokens through GPT-2's byte map);
- char: a BPE model with one token per character and no merges (a BPE model with no merges is exactly a
  character lookup) and a decoder that joins pieces without spaces;
- word: HF's WordLevel model behind kiln's own split pattern, with <|unk|>;
- an imported (`hf`) tokenizer: its own document, untouched.

kiln's documents end with <|endoftext|> (the token shards put it after every document), so that token is the
EOS, and the BOS too (GPT-2's convention): a prompt-less `generate` in transformers starts from it as kiln does.
One difference is by design: kiln refuses a character its char vocabulary lacks, HF's char model drops it.
"""

from __future__ import annotations

from typing import Any

from kiln.tokenizer import ENDOFTEXT, BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer, WordTokenizer
from kiln.tokenizer.chat import template_for
from kiln.tokenizer.hf import HFTokenizer
from kiln.tokenizer.hf_export import BYTE_LEVEL, bpe_model, hf_document, to_hf_json
from kiln.tokenizer.pretrained import bytes_to_unicode
from kiln.tokenizer.word import UNK, WORD_PATTERN


def _bpe(vocab: dict[str, int], merges: list[list[str]]) -> dict[str, Any]:
    return bpe_model(vocab, merges, ignore_merges=False)


def tokenizer_json(tok: Tokenizer) -> dict[str, Any]:
    """The tokenizer.json document for any kiln tokenizer."""
    if isinstance(tok, HFTokenizer):
        return tok.document
    if isinstance(tok, BPETokenizer):
        return to_hf_json(tok)
    if isinstance(tok, ByteTokenizer):
        show = bytes_to_unicode()
        return hf_document(_bpe({show[b]: b for b in range(256)}, []), BYTE_LEVEL, BYTE_LEVEL, {})
    if isinstance(tok, CharTokenizer):
        return hf_document(_bpe(dict(tok.stoi), []), None, {"type": "Fuse"}, {})
    if isinstance(tok, WordTokenizer):
        model = {"type": "WordLevel", "vocab": dict(tok.stoi), "unk_token": UNK}
        split = {
            "type": "Split",
            "pattern": {"Regex": WORD_PATTERN.pattern},
            "behavior": "Isolated",
            "invert": False,
        }
        return hf_document(model, split, {"type": "Fuse"}, tok.special_tokens)
    raise ValueError(f"no Hugging Face form for a {type(tok).__name__} tokenizer")


def bos_eos(tok: Tokenizer) -> tuple[str | None, str | None]:
    """The BOS and EOS token names: the imported tokenizer's own, else <|endoftext|> for both when it exists."""
    if isinstance(tok, HFTokenizer):
        return tok.bos_token, tok.eos_token
    specials = tok.special_tokens
    if "<|begin_of_text|>" in specials:  # a Llama 3-style vocabulary names its own
        return "<|begin_of_text|>", "<|end_of_text|>" if "<|end_of_text|>" in specials else None
    name = ENDOFTEXT if ENDOFTEXT in specials else None
    return name, name


def tokenizer_config(tok: Tokenizer, model_max_length: int) -> dict[str, Any]:
    """tokenizer_config.json: the fast tokenizer class (no custom code), BOS/EOS by name, no automatic BOS
    (kiln never prepends one: documents are separated by EOS), and kiln's ChatML template when the vocabulary
    has its tokens (an imported tokenizer keeps the template it came with)."""
    bos, eos = bos_eos(tok)
    out: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": bos,
        "eos_token": eos,
    }
    if isinstance(tok, WordTokenizer):
        out["unk_token"] = UNK
    if isinstance(tok, HFTokenizer):
        if tok.chat_template:
            out["chat_template"] = tok.chat_template
    elif (template := template_for(tok)) is not None:
        out["chat_template"] = template.jinja
    return out
