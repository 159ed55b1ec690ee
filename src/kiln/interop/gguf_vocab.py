"""A Hugging Face byte-level BPE `tokenizer.json` as llama.cpp's tokenizer metadata (`tokenizer.ggml.*`).

llama.cpp does not run the tokenizer.json: it has its own BPE with a fixed set of pre-tokenizers (the regex
that cuts text into chunks before merging), chosen by the name in `tokenizer.ggml.pre`. llama.cpp's converter
picks that name by hashing the token ids of a probe text, which only recognises published vocabularies; a
kiln vocabulary is new, so the name is chosen here from the split regex itself, and only where the regex is
one llama.cpp implements (src/llama-vocab.cpp). Any other regex is refused: a GGUF that splits text
differently would load and silently produce other ids.

Known differences that remain (tests pin them):
- kiln's `gpt4` pattern (tiktoken's cl100k) is written as "llama-bpe" (the Llama-3 split). The two agree
  everywhere except whitespace at the very end of a text that holds a line break followed by more
  whitespace ("ok\\n " is ["ok", "\\n "] in kiln, ["ok", "\\n", " "] in llama.cpp): tiktoken's `\\s++$`.
- "gpt-2" in llama.cpp always applies merges; a tokenizer.json with `ignore_merges` (kiln's exports) encodes a
  chunk that is itself a token as that token. They differ only on a chunk that is a token its own bytes do not
  BPE to (rare: `recover_merges` in kiln.tokenizer.hf_export finds no merge for such a token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf

from kiln.interop.gguf_errors import GGUFExportError
from kiln.tokenizer.hf_export import onig_pattern
from kiln.tokenizer.patterns import GPT2_PATTERN, GPT4_PATTERN, O200K_PATTERN

# The regexes each llama.cpp pre-tokenizer name implements, as tokenizer.json files spell them.
_GPT2_CLASSIC = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_LLAMA3 = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
    r"""\s+(?!\S)|\s+"""
)
KNOWN_SPLITS: dict[str, str] = {
    _GPT2_CLASSIC: "gpt-2",
    GPT2_PATTERN: "gpt-2",  # tiktoken's r50k spelling: the same chunks (possessive and `\s++$` are speed-ups)
    onig_pattern(GPT2_PATTERN): "gpt-2",
    _LLAMA3: "llama-bpe",
    GPT4_PATTERN: "llama-bpe",  # cl100k: the Llama-3 split but for `\s++$` (see the module docstring)
    onig_pattern(GPT4_PATTERN): "llama-bpe",
    O200K_PATTERN: "gpt-4o",
}

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
NORMAL, CONTROL, USER_DEFINED, UNUSED = (
    gguf.TokenType.NORMAL,
    gguf.TokenType.CONTROL,
    gguf.TokenType.USER_DEFINED,
    gguf.TokenType.UNUSED,
)


@dataclass(frozen=True)
class GGUFVocab:
    """Everything `tokenizer.ggml.*` holds for a byte-level BPE vocabulary."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | list[dict[str, str]] | None

    def add_to(self, writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.token_types)
        writer.add_token_merges(self.merges)
        if self.bos_id is not None:
            writer.add_bos_token_id(self.bos_id)
        if self.eos_id is not None:
            writer.add_eos_token_id(self.eos_id)
        if self.pad_id is not None:
            writer.add_pad_token_id(self.pad_id)
        # Always explicit: llama.cpp's default for "llama-bpe" is to add BOS, which a kiln model may never have seen.
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """The llama.cpp pre-tokenizer name for this tokenizer.json's split, or GGUFExportError naming the field."""
    pre = tokenizer_json.get("pre_tokenizer")
    if not isinstance(pre, dict):
        raise GGUFExportError("tokenizer.json: pre_tokenizer is missing; llama.cpp needs a byte-level BPE split")
    if pre.get("type") == "ByteLevel":  # GPT-2's own form: the regex is implicit in the ByteLevel step
        _check_byte_level(pre, "pre_tokenizer")
        if not pre.get("use_regex", True):
            raise GGUFExportError("tokenizer.json: pre_tokenizer ByteLevel has use_regex=false and no Split before it")
        return "gpt-2"
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2 or steps[0].get("type") != "Split" or steps[1].get("type") != "ByteLevel":
        raise GGUFExportError(
            f"tokenizer.json: pre_tokenizer {_describe(pre)} is not one llama.cpp implements "
            "(ByteLevel, or Sequence[Split(regex), ByteLevel])"
        )
    split, byte_level = steps
    _check_byte_level(byte_level, "pre_tokenizer ByteLevel step")
    if byte_level.get("use_regex", True):
        raise GGUFExportError("tokenizer.json: the ByteLevel step after Split must have use_regex=false")
    regex = (split.get("pattern") or {}).get("Regex")
    if split.get("behavior") != "Isolated" or split.get("invert") or not isinstance(regex, str):
        raise GGUFExportError("tokenizer.json: the Split pre-tokenizer must be a Regex with behavior Isolated")
    name = KNOWN_SPLITS.get(regex)
    if name is None:
        raise GGUFExportError(
            f"tokenizer.json: split regex {regex!r} is not one llama.cpp implements; "
            "retrain the tokenizer with pattern gpt2, gpt4 or o200k to export it as GGUF"
        )
    return name


def _check_byte_level(step: dict[str, Any], where: str) -> None:
    if step.get("add_prefix_space"):
        raise GGUFExportError(f"tokenizer.json: {where} has add_prefix_space=true, which llama.cpp's BPE never does")


def _describe(pre: dict[str, Any]) -> str:
    kinds = [s.get("type") for s in pre.get("pretokenizers", [])] if pre.get("type") == "Sequence" else []
    return f"{pre.get('type')}[{', '.join(map(str, kinds))}]" if kinds else str(pre.get("type"))


def _check_model(tokenizer_json: dict[str, Any]) -> dict[str, Any]:
    model = tokenizer_json.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise GGUFExportError(f"tokenizer.json: model type {kind!r} is not BPE; only byte-level BPE exports to GGUF")
    if model.get("byte_fallback"):
        raise GGUFExportError("tokenizer.json: byte_fallback BPE (sentencepiece style) is not byte-level BPE")
    if tokenizer_json.get("normalizer"):
        kind = tokenizer_json["normalizer"].get("type")
        raise GGUFExportError(f"tokenizer.json: normalizer {kind!r} has no GGUF equivalent for a byte-level BPE")
    decoder = tokenizer_json.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise GGUFExportError(f"tokenizer.json: decoder {decoder.get('type')!r} is not ByteLevel")
    if not isinstance(model.get("vocab"), dict) or not isinstance(model.get("merges"), list) or not model["vocab"]:
        raise GGUFExportError("tokenizer.json: model.vocab (a non-empty object) and model.merges (a list) are required")
    return model


def _merge_text(merge: Any) -> str:
    """tokenizers writes a merge as "a b" (before 0.20) or ["a", "b"]; GGUF stores "a b"."""
    if isinstance(merge, str):
        return merge
    if isinstance(merge, list) and len(merge) == 2 and all(isinstance(p, str) for p in merge):
        if " " in merge[0] or " " in merge[1]:
            raise GGUFExportError(f"tokenizer.json: merge {merge!r} holds a space, which GGUF's 'a b' form cannot")
        return f"{merge[0]} {merge[1]}"
    raise GGUFExportError(f"tokenizer.json: merge {merge!r} is neither 'a b' nor ['a', 'b']")


def _token_content(value: Any) -> str | None:
    """tokenizer_config.json writes a special token as a string or as an AddedToken object."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _first_id(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _special_id(
    name: str, ids: dict[str, int], len_vocab: int, tokenizer_config: dict[str, Any], *fallbacks: dict[str, Any]
) -> int | None:
    """The id of `<name>_token` from tokenizer_config.json, else `<name>_token_id` of the model configs."""
    content = _token_content(tokenizer_config.get(f"{name}_token"))
    if content is not None:
        if content not in ids:
            raise GGUFExportError(f"tokenizer_config.json: {name}_token {content!r} is not in the vocabulary")
        return ids[content]
    for config in fallbacks:
        found = _first_id(config.get(f"{name}_token_id"))
        if found is not None:
            if not 0 <= found < len_vocab:
                raise GGUFExportError(f"config: {name}_token_id {found} is outside the vocabulary ({len_vocab} ids)")
            return found
    return None


def _post_processor_adds(tokenizer_json: dict[str, Any]) -> tuple[bool, bool]:
    """(adds BOS, adds EOS) as the tokenizer.json's TemplateProcessing post-processor does for one sequence."""
    post = tokenizer_json.get("post_processor") or {}
    steps = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for step in steps:
        if step.get("type") == "TemplateProcessing":
            single = step.get("single") or []
            return bool(single and "SpecialToken" in single[0]), bool(single and "SpecialToken" in single[-1])
    return False, False


def vocab_from_tokenizer_json(
    tokenizer_json: dict[str, Any],
    vocab_size: int,
    *,
    tokenizer_config: dict[str, Any] | None = None,
    hf_config: dict[str, Any] | None = None,
    generation_config: dict[str, Any] | None = None,
) -> GGUFVocab:
    """The GGUF vocabulary for a model with `vocab_size` embedding rows (ids past the tokenizer are padding,
    written as UNUSED "[PAD<id>]" tokens as llama.cpp's converter does)."""
    tokenizer_config = tokenizer_config or {}
    model = _check_model(tokenizer_json)
    pre = pre_tokenizer_name(tokenizer_json)
    ids: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tokenizer_json.get("added_tokens", [])}
    ids.update({content: t["id"] for content, t in added.items()})
    if ids and max(ids.values()) >= vocab_size:
        raise GGUFExportError(
            f"tokenizer.json has id {max(ids.values())} but config.json vocab_size is {vocab_size}; "
            "the embedding must have a row for every token"
        )
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [int(UNUSED)] * vocab_size
    for text, i in ids.items():
        tokens[i] = text
        if text in added:
            types[i] = int(CONTROL if added[text].get("special") else USER_DEFINED)
        else:
            types[i] = int(NORMAL)
    post_bos, post_eos = _post_processor_adds(tokenizer_json)
    add_bos = tokenizer_config.get("add_bos_token", post_bos)
    add_eos = tokenizer_config.get("add_eos_token", post_eos)
    configs = [c for c in (generation_config, hf_config) if c]
    return GGUFVocab(
        tokens=tokens,
        token_types=types,
        merges=[_merge_text(m) for m in model["merges"]],
        pre=pre,
        bos_id=_special_id("bos", ids, vocab_size, tokenizer_config, *configs),
        eos_id=_special_id("eos", ids, vocab_size, tokenizer_config, *configs),
        pad_id=_special_id("pad", ids, vocab_size, tokenizer_config, *configs),
        add_bos=bool(add_bos),
        add_eos=bool(add_eos),
        chat_template=tokenizer_config.get("chat_template") or None,
    )
