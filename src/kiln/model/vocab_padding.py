"""Vocabulary padding (`GPTConfig.vocab_multiple_of`) stays inside kiln: other formats get the real rows only.

A padded model has more embedding and LM-head rows than token ids; the extra rows are never looked up (no token
has their id) and never predicted (`GPT.logits` cuts their columns off), so dropping them changes no output.
Hugging Face and GGUF files then describe the tokenizer's vocabulary exactly, as an unpadded model would.
"""

from __future__ import annotations

from torch import Tensor

from kiln.model.config import GPTConfig

VOCAB_ROWS = ("wte.weight", "lm_head.weight")
"""The two tensors with one row per token id (the same matrix when the embeddings are tied)."""


def strip_vocab_padding(state: dict[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """`state` (kiln's tensor names) with the embedding and LM head cut to `cfg.vocab_size` rows."""
    if cfg.padded_vocab_size == cfg.vocab_size:
        return state
    return {k: v[: cfg.vocab_size] if k in VOCAB_ROWS else v for k, v in state.items()}
