"""`kiln chat-tokens CHECKPOINT --out DIR`: give a base model the chat template's tokens.

A model pretrained on a vocabulary without <|im_start|> and <|im_end|> cannot be taught the chat template. This
adds them to the tokenizer and grows the embedding table (and an untied output head) by their rows, each
initialised to the mean of the existing rows: a new token then starts as an "average" token rather than a random
vector whose logits could dominate the first fine-tuning steps (the initialisation John Hewitt's note
"Initializing new word embeddings for pretrained language models" recommends).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from kiln.stage import Summary, write_resolved_config
from kiln.tokenizer.chat import CHAT_TOKENS, has_chat_tokens


@dataclass
class ChatTokensConfig:
    """Which checkpoint gets the chat tokens, and where the result goes."""

    checkpoint: str
    """A kiln checkpoint directory, or a training run (its best checkpoint is used)."""
    out_dir: str
    """The new checkpoint directory."""
    overwrite: bool = False
    """Replace out_dir if it exists."""

    def validate(self) -> ChatTokensConfig:
        return self


@dataclass
class ChatTokensSummary(Summary):
    out_dir: str
    added: dict[str, int]
    vocab_size: int

    def render(self) -> str:
        if not self.added:
            return f"the tokenizer already has {' and '.join(CHAT_TOKENS)}; copied to {self.out_dir}"
        ids = ", ".join(f"{k}={v}" for k, v in self.added.items())
        return f"added {ids}; vocabulary {self.vocab_size:,} -> {self.out_dir} (fine-tune it with kiln sft)"


def run(config: ChatTokensConfig) -> ChatTokensSummary:
    from kiln.model import GPT
    from kiln.model.checkpoint import load_checkpoint, save_checkpoint
    from kiln.model.vocab_padding import VOCAB_ROWS
    from kiln.tokenizer import BPETokenizer

    config.validate()
    out = Path(config.out_dir)
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    model, tok, meta = load_checkpoint(config.checkpoint)
    if tok is None:
        raise ValueError(f"{config.checkpoint} has no tokenizer/ directory")
    added: dict[str, int] = {}
    if not has_chat_tokens(tok):
        if not isinstance(tok, BPETokenizer):
            raise ValueError(
                f"{config.checkpoint}: chat tokens can be added to a BPE tokenizer, not a {tok.kind} one "
                "(train the tokenizer with --chat-tokens instead)"
            )
        before = tok.special_tokens
        tok = tok.with_special_tokens(CHAT_TOKENS)
        added = {k: v for k, v in tok.special_tokens.items() if k not in before}
    cfg = model.config
    vocab = max(cfg.vocab_size, tok.vocab_size)
    if vocab > cfg.vocab_size:
        grown = GPT(replace(cfg, vocab_size=vocab))
        state = model.state_dict()
        with torch.no_grad():
            for name, param in grown.state_dict().items():
                old = state[name]
                if name not in VOCAB_ROWS:
                    param.copy_(old)
                else:  # wte / lm_head: the real old rows, then their mean (vocab padding rows are not real)
                    real = old[: cfg.vocab_size]
                    param[: cfg.vocab_size] = real
                    param[cfg.vocab_size :] = real.mean(dim=0, keepdim=True)
        model = grown
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(staging, model, tok, {k: v for k, v in meta.items() if k not in ("model", "weights_sha256")})
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    write_resolved_config(config, out, "chat-tokens")
    return ChatTokensSummary(out_dir=str(out), added=added, vocab_size=vocab)
