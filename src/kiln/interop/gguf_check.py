"""Read a GGUF back with gguf's own reader and check it has what llama.cpp needs to load it.

`check_gguf` is the reader side of `write_gguf`: the keys llama.cpp's loader reads for the architecture, every
tensor its graph builds from, and shapes that agree with those keys (the token list and the embedding, the
head counts and the q/k/v rows). It returns a summary a command can print. A file that fails says which key
or tensor is at fault, so a hand-edited or truncated file is caught before llama.cpp meets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from kiln.interop.gguf_errors import GGUFExportError

_COMMON_KEYS = ("context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count")
_ARCH_KEYS = {
    "gpt2": (*_COMMON_KEYS, "attention.layer_norm_epsilon"),
    "llama": (*_COMMON_KEYS, "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.dimension_count"),
}
_TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.merges")
_BLOCK = {
    "gpt2": ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"),
    "llama": ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"),
}
_GPT2_BIASED = _BLOCK["gpt2"]
_DENSE = ("ffn_gate", "ffn_up", "ffn_down")
_MOE = ("ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")


@dataclass(frozen=True)
class GGUFSummary:
    """What a GGUF holds: its architecture, every metadata value, every tensor's (shape, type).

    Shapes are in PyTorch's order (rows first), the reverse of ggml's `ne`."""

    path: Path
    architecture: str
    metadata: dict[str, Any]
    tensors: dict[str, tuple[tuple[int, ...], str]]

    def key(self, name: str) -> Any:
        """An architecture key without its prefix: `key("block_count")` is `<arch>.block_count`."""
        return self.metadata.get(f"{self.architecture}.{name}")


def read_gguf(path: str | Path) -> GGUFSummary:
    path = Path(path)
    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError, IndexError) as e:  # a truncated or foreign file fails in numpy's memmap
        raise GGUFExportError(f"{path}: not a readable GGUF file ({e})") from None
    metadata = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    tensors = {t.name: (tuple(int(n) for n in reversed(t.shape.tolist())), t.tensor_type.name) for t in reader.tensors}
    return GGUFSummary(path, str(metadata.get("general.architecture")), metadata, tensors)


def check_gguf(path: str | Path) -> GGUFSummary:
    """`read_gguf`, then GGUFExportError naming the first thing llama.cpp would reject or misread."""
    s = read_gguf(path)
    if s.architecture not in _ARCH_KEYS:
        raise GGUFExportError(f"{s.path}: general.architecture {s.architecture!r} is not gpt2 or llama")
    missing = [f"{s.architecture}.{k}" for k in _ARCH_KEYS[s.architecture] if s.key(k) is None]
    missing += [k for k in _TOKENIZER_KEYS if k not in s.metadata]
    if missing:
        raise GGUFExportError(f"{s.path}: metadata key(s) missing: {', '.join(missing)}")
    _check_tensors(s)
    return s


def _need(s: GGUFSummary, name: str) -> tuple[int, ...]:
    if name not in s.tensors:
        raise GGUFExportError(f"{s.path}: tensor {name!r} is missing")
    return s.tensors[name][0]


def _check_tensors(s: GGUFSummary) -> None:
    n_vocab, n_embd = len(s.metadata["tokenizer.ggml.tokens"]), s.key("embedding_length")
    if _need(s, "token_embd.weight") != (n_vocab, n_embd):
        raise GGUFExportError(
            f"{s.path}: token_embd.weight is {_need(s, 'token_embd.weight')}, but the vocabulary has {n_vocab} "
            f"tokens and embedding_length is {n_embd}"
        )
    if "output.weight" in s.tensors and _need(s, "output.weight") != (n_vocab, n_embd):
        raise GGUFExportError(f"{s.path}: output.weight is {_need(s, 'output.weight')}, not {(n_vocab, n_embd)}")
    _need(s, "output_norm.weight")
    if s.architecture == "gpt2":
        _need(s, "position_embd.weight")
    experts = s.key("expert_count") or 0
    for i in range(s.key("block_count")):
        names = _BLOCK[s.architecture] + (() if s.architecture == "gpt2" else _MOE if experts else _DENSE)
        for name in names:
            _need(s, f"blk.{i}.{name}.weight")
            if s.architecture == "gpt2" and name in _GPT2_BIASED:
                _need(s, f"blk.{i}.{name}.bias")
        if s.architecture == "llama":
            _check_attention(s, i, n_embd)


def _check_attention(s: GGUFSummary, i: int, n_embd: int) -> None:
    n_head, n_kv = s.key("attention.head_count"), s.key("attention.head_count_kv")
    head_dim = s.key("rope.dimension_count")
    for name, rows in (("attn_q", n_head * head_dim), ("attn_k", n_kv * head_dim), ("attn_v", n_kv * head_dim)):
        shape = _need(s, f"blk.{i}.{name}.weight")
        if shape != (rows, n_embd):
            raise GGUFExportError(f"{s.path}: blk.{i}.{name}.weight is {shape}, the head counts say {(rows, n_embd)}")
